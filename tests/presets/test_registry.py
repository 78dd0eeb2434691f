"""The registry: cached idempotent builds, atomic folders, and resolution of names and paths."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import time

import pytest

from service.errors import ConfigError
from service.models import load_model
from service.presets import PRESETS, Preset, build_preset, preset_dir, resolve_model_path
from service.tasks import NAMES


def test_registry_lists_the_presets_in_priority_order():
    assert list(PRESETS) == [
        "smollm2-135m",
        "minilm-sentiment",
        "minilm-sentiment-ft",
        "digits",
        "digits-seg",
        "cifar10-lite0",
        "imagenet-lite0",
    ]
    assert [p.task for p in PRESETS.values()] == [
        NAMES[3],
        NAMES[0],
        NAMES[0],
        NAMES[1],
        NAMES[2],
        NAMES[1],
        NAMES[1],
    ]


def test_a_preset_whose_optional_package_is_absent_says_how_to_get_it():
    preset = Preset("p", NAMES[1], 1, "a preset", "m:f", optional=("aimserve_absent_pkg", "run `make x`"))
    assert preset.missing() == (
        "preset 'p' needs the optional package 'aimserve_absent_pkg', which is not installed; run `make x`"
    )
    assert PRESETS["digits"].missing() is None
    cifar = PRESETS["cifar10-lite0"]
    assert (cifar.missing() is None) == (importlib.util.find_spec("bigbench") is not None)


def test_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'; known presets: smollm2-135m"):
        build_preset("nope", tmp_path)


@pytest.mark.slow
def test_second_build_returns_at_once_without_touching_the_folder(digits, state_dir):
    folder = preset_dir("digits", state_dir)
    before = (folder / "aimserve.json").stat().st_mtime_ns
    started = time.perf_counter()
    assert build_preset("digits", state_dir) == folder
    assert time.perf_counter() - started < 0.5
    assert (folder / "aimserve.json").stat().st_mtime_ns == before


@pytest.mark.slow
def test_fresh_build_is_atomic_and_complete(tmp_path):
    folder = build_preset("digits", tmp_path)
    assert folder == tmp_path / "presets" / "digits"
    assert sorted(p.name for p in (tmp_path / "presets").iterdir()) == [".digits.lock", "digits"]
    built = json.loads((folder / "aimserve.json").read_text())
    assert built["name"] == "digits" and built["task"] == "image-classification"
    assert built["metrics"]["accuracy"] > 0.95
    assert built["build_seconds"] > 0
    model = load_model(resolve_model_path("digits", tmp_path))
    assert model.name == "digits"
    # A folder whose manifest is gone is not built: refused until rebuilt.
    (folder / "aimserve.json").unlink()
    with pytest.raises(ConfigError, match="is incomplete or outdated"):
        resolve_model_path("digits", tmp_path)


def test_preset_not_built(tmp_path):
    expected = f"preset 'digits-seg' is not built at {tmp_path / 'presets' / 'digits-seg'}"
    with pytest.raises(ConfigError, match=re.escape(expected) + ".*aimserve presets build digits-seg"):
        resolve_model_path("digits-seg", tmp_path)


def test_directory_paths_pass_through(tmp_path):
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    assert resolve_model_path(str(model_dir), tmp_path) == model_dir
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_model_path(str(tmp_path / "m.gguf"), tmp_path) == tmp_path / "m.gguf"


def test_missing_path_names_it(tmp_path):
    missing = tmp_path / "missing-model"
    with pytest.raises(ConfigError, match=re.escape(f"no such directory: {missing}")):
        resolve_model_path(str(missing), tmp_path)


def test_outdated_version_counts_as_not_built(tmp_path):
    folder = preset_dir("digits", tmp_path)
    folder.mkdir(parents=True)
    (folder / "aimserve.json").write_text(json.dumps({"preset_version": 0}))
    with pytest.raises(ConfigError, match="is incomplete or outdated"):
        resolve_model_path("digits", tmp_path)
    shutil.rmtree(folder)
