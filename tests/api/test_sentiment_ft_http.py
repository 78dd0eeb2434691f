"""The slow `minilm-sentiment-ft` preset served over HTTP: skipped unless it is built (`Preset.slow`).

Build it once with `aimserve presets build minilm-sentiment-ft` (docs/presets.md gives the time)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.limits import MAX_INPUTS
from service.models import held_out
from service.store import EmbeddedRedis
from tests.live import LiveService, serve_preset, state_dir
from tests.presets.conftest import built_or_skip

NAME = "minilm-sentiment-ft"
ROWS = 3 * MAX_INPUTS  # held-out tweets sent, in requests of MAX_INPUTS


@pytest.fixture(scope="module")
def ft_service(redis_server: EmbeddedRedis, module_tiers: Path) -> Iterator[LiveService]:
    built_or_skip(NAME, state_dir())  # never builds: skips with the build command when missing
    yield from serve_preset(NAME, redis_server, module_tiers)


def _accuracy(service: LiveService, key: str, texts: list[str], labels: list[str]) -> float:
    results = []
    with service.client(key) as c:
        for start in range(0, len(texts), MAX_INPUTS):
            response = c.post("/v1/classify", json={"inputs": texts[start : start + MAX_INPUTS]})
            assert response.status_code == 200, response.text
            results += response.json()["results"]
    return float(np.mean([r["label"] == y for r, y in zip(results, labels, strict=True)]))


def test_fine_tuned_sentiment_serves_its_held_out_accuracy_over_http(ft_service: LiveService) -> None:
    data = held_out(state_dir() / "presets" / NAME)
    names = ("negative", "neutral", "positive")
    texts = [str(x) for x in list(data.inputs)[:ROWS]]
    labels = [names[int(y)] for y in list(data.labels or [])[:ROWS]]
    _, premium = ft_service.new_tenant("premium")
    clean = _accuracy(ft_service, premium, texts, labels)
    # docs/presets.md: held-out accuracy 0.774 on all 1,500 tweets; 192 tweets give +-3 points (1 sd)
    assert clean >= 0.70, clean
    # Not asserted: free vs premium. Measured 2026-12-02 at load 0.1 on these 192 tweets with the test
    # tiers: premium 0.880, free 0.875; this preset's calibrated tiers are still to be made (issue #14).
