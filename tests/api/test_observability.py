"""The dashboard against a real Prometheus scraping two real services (a classifier and an LLM).

Traffic: a free (σ = 4) and a premium (σ = 0) tenant classify held-out tweets of the sentiment preset and
send their true labels as feedback; both tenants also generate text on the LLM. Then every PromQL
expression of the Grafana dashboard must return data, and the free tier's fidelity and accuracy must be
below the premium tier's (120 labelled rows per tier: the premium tier is the clean model, fidelity 1,
while σ = 4 on logits spread over a few units flips a large share of top-1 answers).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from service.models import held_out
from service.presets import build_preset
from service.store import EmbeddedRedis
from tests.api.conftest import TIERS
from tests.deploy.dashboard import load_dashboard, panel_queries, substitute
from tests.deploy.prometheus_harness import PrometheusHarness, find_prometheus
from tests.live import METRICS_TOKEN, LiveService, state_dir

ROWS = 120


@pytest.fixture
def promised_tiers(tmp_path: Path) -> Path:
    """The API tests' tiers, with the free tier's σ kept beside a promised fidelity (a tier may give both:
    the σ is in force, the target is exported), so the drift panel has a target to compare with."""
    path = tmp_path / "tiers.yaml"
    text = TIERS.replace("    sigma: 4.0\n", "    sigma: 4.0\n    target_fidelity: 0.7\n", 1)
    assert text != TIERS
    path.write_text(text)
    return path


def _tier_values(result: list[dict[str, object]]) -> dict[str, float]:
    return {r["metric"]["tier"]: float(r["value"][1]) for r in result}  # type: ignore[index]


@pytest.mark.skipif(find_prometheus() is None, reason="prometheus not installed (make test installs it)")
def test_every_dashboard_query_returns_data_and_free_is_below_premium(
    redis_server: EmbeddedRedis, sentiment_preset: str, promised_tiers: Path
) -> None:
    build_preset("smollm2-135m", state_dir())
    data = held_out(state_dir() / "presets" / sentiment_preset)
    texts, labels = list(data.inputs)[:ROWS], list(data.labels)[:ROWS]  # type: ignore[arg-type]
    clf = LiveService(sentiment_preset, promised_tiers, redis_server.url).start()
    llm = LiveService("smollm2-135m", promised_tiers, redis_server.url).start()
    try:
        with PrometheusHarness(
            [f"127.0.0.1:{clf.port}", f"127.0.0.1:{llm.port}"], metrics_token=METRICS_TOKEN
        ) as prom:
            prom.wait_for_target(timeout=60)
            names = clf.components.model.labels  # type: ignore[union-attr]
            for tier in ("free", "premium"):
                _, key = clf.new_tenant(tier)
                with clf.client(key) as c:
                    for start in range(0, ROWS, 20):
                        res = c.post("/v1/classify", json={"inputs": texts[start : start + 20]}).json()
                        for i in range(len(res["results"])):
                            label = names[int(labels[start + i])]
                            r = c.post("/v1/feedback", json={"id": res["id"], "index": i, "label": label})
                            assert r.status_code == 204
                    c.post("/v1/classify", json={})  # one 4xx for the error panels
                _, gen_key = llm.new_tenant(tier)
                with llm.client(gen_key) as g:
                    for prompt in ("Hello!", "Name a colour."):
                        g.post(
                            "/v1/generate", json={"prompt": prompt, "max_new_tokens": 8}
                        ).raise_for_status()
                clf.client().get("/readyz")
            time.sleep(4)  # at least two scrapes after the traffic, so rate() has two samples
            empty = []
            for q in panel_queries(load_dashboard()):
                expr = substitute(q.expr, rate_interval="2m", window="5m")
                if not prom.query(expr):
                    empty.append(f"{q.panel}: {expr}")
            assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
            fidelity = _tier_values(
                prom.query(
                    substitute(
                        'sum by (tier) (aim_fidelity_matches_total{job="aimserve"}) '
                        '/ sum by (tier) (aim_fidelity_rows_total{job="aimserve"})'
                    )
                )
            )
            accuracy = _tier_values(
                prom.query("sum by (tier) (aim_feedback_correct_total) / sum by (tier) (aim_feedback_total)")
            )
            assert fidelity["premium"] == 1.0 and fidelity["free"] < 0.95, fidelity
            assert accuracy["free"] < accuracy["premium"], accuracy
    finally:
        clf.stop()
        llm.stop()
