"""The Prometheus harness against a real Prometheus scraping a real `Metrics` registry over HTTP.

Also runs every PromQL expression of the Grafana dashboard on that Prometheus: each must parse, return data,
and the quality ratios must come out as the traffic driver made them (free below premium).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from prometheus_client import CollectorRegistry

from service.metrics import Metrics

from .dashboard import load_dashboard, panel_queries, substitute
from .metrics_server import TARGETS, TRAFFIC, MetricsServer, TrafficDriver
from .prometheus_harness import (
    PROMETHEUS_CONFIG,
    PrometheusError,
    PrometheusHarness,
    derive_config,
    find_prometheus,
)

needs_prometheus = pytest.mark.skipif(
    find_prometheus() is None, reason="prometheus binary not installed (make test installs Debian's package)"
)
TOKEN = "test-metrics-token-5f2c"
WINDOW = "5s"


def by_tier(result: list[dict[str, object]]) -> dict[str, float]:
    return {str(s["metric"]["tier"]): float(s["value"][1]) for s in result}  # type: ignore[index]


def test_derive_config_keeps_the_job_and_replaces_target_interval_and_token(tmp_path):
    base = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    token_file = tmp_path / "token"
    config = derive_config(base, "127.0.0.1:9", "1s", token_file)
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "aimserve"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9"]}]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": str(token_file)}
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}


def test_derive_config_rejects_a_config_without_the_aimserve_job(tmp_path):
    with pytest.raises(PrometheusError, match="aimserve"):
        derive_config({"scrape_configs": [{"job_name": "other"}]}, "127.0.0.1:9", "1s", tmp_path / "t")


@pytest.fixture(scope="module")
def scraped() -> Iterator[PrometheusHarness]:
    """A real Prometheus scraping a token-protected `Metrics` server that receives steady traffic."""
    metrics = Metrics(CollectorRegistry())
    with (
        MetricsServer(metrics, token=TOKEN) as server,
        TrafficDriver(metrics),
        PrometheusHarness(server.target, metrics_token=TOKEN) as prom,
    ):
        prom.wait_for_target()
        # rate() over WINDOW needs several scrapes of both tiers.
        prom.wait_for(
            f"count_over_time(aim_fidelity_rows_total[{WINDOW}])",
            accept=lambda r: len(r) == len(TRAFFIC) and all(float(s["value"][1]) >= 4 for s in r),
        )
        yield prom


@needs_prometheus
def test_harness_scrapes_with_the_bearer_token(scraped):
    (up,) = scraped.query('up{job="aimserve"}')
    assert up["value"][1] == "1"
    (target,) = scraped.targets()
    assert target["health"] == "up", target["lastError"]


@needs_prometheus
def test_wrong_token_makes_the_target_down():
    metrics = Metrics(CollectorRegistry())
    with (
        MetricsServer(metrics, token=TOKEN) as server,
        PrometheusHarness(server.target, metrics_token="wrong") as prom,
    ):
        prom.wait_for('up{job="aimserve"}', accept=lambda r: r[0]["value"][1] == "0")
        (target,) = prom.targets()
        assert "401" in target["lastError"]
    assert server.rejected >= 1


@needs_prometheus
def test_query_reports_bad_promql(scraped):
    with pytest.raises(PrometheusError, match="bad_data"):
        scraped.query("sum by (tier (aim_requests_total)")


@needs_prometheus
def test_every_dashboard_query_returns_data(scraped):
    queries = panel_queries(load_dashboard())
    assert len(queries) >= 20
    empty = [
        (q.panel, q.ref_id)
        for q in queries
        if not scraped.query(substitute(q.expr, rate_interval=WINDOW, window=WINDOW))
    ]
    assert empty == []


def dashboard_expr(title: str, ref_id: str = "A") -> str:
    (query,) = [q for q in panel_queries(load_dashboard()) if q.panel == title and q.ref_id == ref_id]
    return substitute(query.expr, rate_interval=WINDOW, window=WINDOW)


@needs_prometheus
@pytest.mark.parametrize(
    ("title", "field"),
    [("Fidelity by tier (live traffic)", "matches"), ("Accuracy by tier (feedback labels)", "correct")],
)
def test_dashboard_quality_ratios_match_the_traffic(scraped, title, field):
    got = by_tier(scraped.query(dashboard_expr(title)))
    expected = {tier: spec[field] / 10 for tier, spec in TRAFFIC.items()}
    assert got.keys() == expected.keys()
    for tier, value in expected.items():
        # A scrape may fall between the two counter increments of one tick: a few rows out of ~1000.
        assert got[tier] == pytest.approx(value, abs=0.03), tier
    assert got["free"] < got["premium"]


@needs_prometheus
def test_dashboard_error_ratio_is_zero_filled(scraped):
    got = by_tier(scraped.query(dashboard_expr("Error ratio by tier", "A")))
    assert got["premium"] == 0.0
    assert got["free"] == pytest.approx(TRAFFIC["free"]["errors"] / 10, abs=0.03)


@needs_prometheus
def test_dashboard_latency_quantiles_fall_in_the_observed_bucket(scraped):
    p99 = by_tier(scraped.query(dashboard_expr("Latency p50 / p95 / p99 by tier", "C")))
    # Every request of a tier takes the same time: any quantile lies in the bucket holding that time.
    assert 0.01 < p99["free"] <= 0.025
    assert 0.1 < p99["premium"] <= 0.25


@needs_prometheus
def test_dashboard_sigma_shows_the_tiers_in_force(scraped):
    got = by_tier(scraped.query(dashboard_expr("Effective sigma by tier")))
    assert got == {tier: spec["sigma"] for tier, spec in TRAFFIC.items()}


@needs_prometheus
def test_dashboard_drift_is_measured_minus_target_for_tiers_with_a_target(scraped):
    got = by_tier(scraped.query(dashboard_expr("Fidelity drift from the tier's target (live traffic)")))
    assert got.keys() == TARGETS.keys()
    assert got["free"] == pytest.approx(TRAFFIC["free"]["matches"] / 10 - TARGETS["free"], abs=0.03)
