"""Presets built once through ``build_preset`` into the shared cache (``AIM_STATE_DIR`` or
``<repo>/.aimserve``), so a second test run reuses them, and loaded through the real loader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.errors import ConfigError
from service.models import LoadedModel, load_model
from service.presets import PRESETS, build_preset, resolve_model_path

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return Path(os.environ.get("AIM_STATE_DIR", REPO / ".aimserve"))


def _loaded(name: str, state_dir: Path) -> LoadedModel:
    return load_model(build_preset(name, state_dir))


@pytest.fixture(scope="session")
def smollm2(state_dir: Path) -> LoadedModel:
    return _loaded("smollm2-135m", state_dir)


@pytest.fixture(scope="session")
def sentiment(state_dir: Path) -> LoadedModel:
    return _loaded("minilm-sentiment", state_dir)


def built_or_skip(name: str, state_dir: Path) -> LoadedModel:
    """A slow preset (``Preset.slow``), which the suite does not build: loaded when built, else the test
    is skipped, saying how to build it."""
    try:
        return load_model(resolve_model_path(name, state_dir))
    except ConfigError as error:
        pytest.skip(f"{error} ({PRESETS[name].slow})")


@pytest.fixture(scope="session")
def sentiment_ft(state_dir: Path) -> LoadedModel:
    return built_or_skip("minilm-sentiment-ft", state_dir)


@pytest.fixture(scope="session")
def digits(state_dir: Path) -> LoadedModel:
    return _loaded("digits", state_dir)


@pytest.fixture(scope="session")
def digits_seg(state_dir: Path) -> LoadedModel:
    return _loaded("digits-seg", state_dir)


@pytest.fixture(scope="session")
def imagenet(state_dir: Path) -> LoadedModel:
    return _loaded("imagenet-lite0", state_dir)
