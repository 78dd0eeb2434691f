"""Fixtures for the HTTP tests: a real Redis server, real presets, the app served over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.presets import build_preset
from service.store import EmbeddedRedis
from tests.live import LiveService, serve_preset, state_dir

TIERS = """\
default_tier: free
tiers:
  premium:
    sigma: 0.0
    priority: 2
    rate_limit: {requests_per_minute: 600}
    focus: {allowed: true, max_strength: 3.0}
  standard:
    sigma: 1.0
    priority: 1
    focus: {allowed: true, max_strength: 1.5}
  free:
    sigma: 4.0
    rate_limit: {requests_per_minute: 600}
    focus: {allowed: false}
  tiny:
    sigma: 2.0
    rate_limit: {requests_per_minute: 5}
    focus: {allowed: false}
"""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sentiment_preset() -> str:
    build_preset("minilm-sentiment", state_dir())
    return "minilm-sentiment"


@pytest.fixture
def tiers_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiers.yaml"
    path.write_text(TIERS)
    return path


@pytest.fixture(scope="module")
def module_tiers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiers") / "tiers.yaml"
    path.write_text(TIERS)
    return path


@pytest.fixture(scope="module")
def text_service(
    redis_server: EmbeddedRedis, sentiment_preset: str, module_tiers: Path
) -> Iterator[LiveService]:
    yield from serve_preset(sentiment_preset, redis_server, module_tiers)
