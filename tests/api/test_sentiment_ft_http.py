"""The slow `minilm-sentiment-ft` preset served over HTTP with the shipped tiers: skipped unless it is built.

Build it once with `aimserve presets build minilm-sentiment-ft` (docs/presets.md gives the time). The service
runs the repository's tiers.yaml, whose noisy tiers are target_fidelity tiers (σ solved on this preset's own
calibration inputs at load), not the suite's fixed-σ test tiers: a fixed σ means different things on
different models. It sends every 4th held-out tweet (all three classes): docs/results.md section 4a explains
why the first 192 tweets in file order, with the test secret, were served as well by a free tier as by
premium (the service's semantic keys, not the preset's logit scale).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from service.limits import MAX_INPUTS
from service.models import held_out
from service.store import EmbeddedRedis
from tests.live import LiveService, state_dir
from tests.presets.conftest import REPO, built_or_skip

NAME = "minilm-sentiment-ft"
STRIDE = 4  # every 4th of the 1,500 held-out tweets: 375, in 6 requests per tier (free allows 30 a minute)
SHIPPED_TIERS = REPO / "tiers.yaml"


@pytest.fixture(scope="module")
def ft_service(redis_server: EmbeddedRedis) -> Iterator[LiveService]:
    built_or_skip(NAME, state_dir())  # never builds: skips with the build command when missing
    # the target_fidelity tiers are solved at load over the 1,500 held-out tweets: `aimserve calibrate` took
    # 113-166 s for 1,000 at load 8-9 (calibrate.log), beyond LiveService's default start timeout
    service = LiveService(NAME, SHIPPED_TIERS, redis_server.url).start(timeout_s=600.0)
    yield service
    service.stop()


def _accuracy(service: LiveService, key: str, texts: list[str], labels: list[str]) -> float:
    results = []
    with service.client(key) as c:
        for start in range(0, len(texts), MAX_INPUTS):
            response = c.post("/v1/classify", json={"inputs": texts[start : start + MAX_INPUTS]})
            assert response.status_code == 200, response.text
            results += response.json()["results"]
    return float(np.mean([r["label"] == y for r, y in zip(results, labels, strict=True)]))


def test_fine_tuned_sentiment_serves_a_free_tier_below_premium_over_http(ft_service: LiveService) -> None:
    data = held_out(state_dir() / "presets" / NAME)
    names = ("negative", "neutral", "positive")
    texts = [str(x) for x in list(data.inputs)[::STRIDE]]
    labels = [names[int(y)] for y in list(data.labels or [])[::STRIDE]]
    with ft_service.admin() as admin:
        tiers = admin.get("/admin/tiers").json()["tiers"]
    # free's σ is solved at load on the draws this service (the test secret) serves the preset's 1,500
    # held-out tweets (`service.serving.served_calibration`): 2.4187 from the same rows' forward pass in
    # bench/served_calibration.py (its batches pad differently: hence 1e-3), where it serves them a fidelity
    # of 0.700. For independent draws, as `aimserve calibrate` solves it, it was 1.8081
    # (docs/figures/calibration/calibrate.log), at which this secret served them 0.749 (measured in process).
    assert tiers["premium"]["sigma"] == 0.0 and tiers["free"]["target_fidelity"] == 0.7
    assert tiers["free"]["sigma"] == pytest.approx(2.4187, abs=1e-3)
    premium = _accuracy(ft_service, ft_service.new_tenant("premium")[1], texts, labels)
    free = _accuracy(ft_service, ft_service.new_tenant("free")[1], texts, labels)
    # Measured in-process with this secret on these 375 tweets: premium 0.784, free 0.637 at σ 2.4187 (0.661
    # at the earlier 1.8081; bench/served_tiers.py's `every_4th` gave 0.653 for preset v1, keyed on the
    # text as sent). Premium is the clean model (0.774 on all 1,500); free must sit at least 8 points under
    # it (measured 14.7).
    assert premium >= 0.74, premium
    assert free <= premium - 0.08, (free, premium)
