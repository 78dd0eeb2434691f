"""Grafana dashboard and provisioning: valid JSON, the provisioned datasource, PromQL on real metrics."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from service.metrics import Metrics

from .common import REPO
from .dashboard import GENERATION_ROW, iter_panels, load_dashboard, metric_names, panel_queries, substitute

PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="module")
def registered() -> frozenset[str]:
    return Metrics(CollectorRegistry()).metric_names()


def datasource() -> dict[str, Any]:
    (path,) = (PROVISIONING / "datasources").glob("*.yml")
    config = yaml.safe_load(path.read_text())
    assert config["apiVersion"] == 1
    (only,) = config["datasources"]
    return dict(only)


def test_dashboard_is_a_current_grafana_dashboard(dashboard):
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    ids = [p["id"] for p in rows] + [p["id"] for _, p in iter_panels(dashboard)]
    assert len(ids) == len(set(ids))
    for _, panel in iter_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24


def test_every_panel_and_target_uses_the_provisioned_prometheus(dashboard):
    source = datasource()
    assert source["type"] == "prometheus"
    expected = {"type": "prometheus", "uid": source["uid"]}
    panels = [p for _, p in iter_panels(dashboard)]
    assert len(panels) >= 15
    for panel in panels:
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected and target["refId"] and target["expr"].strip()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == expected


def test_every_query_uses_only_metrics_that_metrics_registers(dashboard, registered):
    queries = panel_queries(dashboard)
    for query in queries:
        names = metric_names(query.expr)
        assert names, f"{query.panel}/{query.ref_id} selects no metric"
        assert names <= registered, f"{query.panel}/{query.ref_id}: unknown {sorted(names - registered)}"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            (name,) = re.findall(r"label_values\((\w+),", variable["definition"])
            assert name in registered


def test_the_metric_name_check_catches_an_unknown_metric(registered):
    names = metric_names('sum by (tier) (rate(aim_request_total{tier=~"$tier"}[$__rate_interval]))')
    assert names == {"aim_request_total"} and not names <= registered


def test_every_metric_family_is_on_the_dashboard(dashboard):
    used = set().union(*(metric_names(q.expr) for q in panel_queries(dashboard)))
    families = {f.name for f in Metrics(CollectorRegistry()).registry.collect()}
    suffixes = ("_total", "_bucket", "_sum", "_count", "_info")
    covered = {f for f in families if f in used or any(f + s in used for s in suffixes)}
    assert covered == families


def test_topics_the_operators_need_are_there(dashboard):
    titles = " | ".join(p["title"].lower() for _, p in iter_panels(dashboard))
    for topic in (
        "accuracy",
        "fidelity",
        "sigma",
        "requests per second",
        "error",
        "p50 / p95 / p99",
        "queue",
        "batch",
        "forward",
        "tokens per second",
        "first token",
        "reloads",
        "redis",
    ):
        assert topic in titles, topic
    latency = [q.expr for q in panel_queries(dashboard) if q.panel.startswith("Latency p50 / p95 / p99")]
    assert [re.match(r"histogram_quantile\(([\d.]+),", e).group(1) for e in latency] == [
        "0.5",
        "0.95",
        "0.99",
    ]
    rows = {q.row for q in panel_queries(dashboard)}
    assert GENERATION_ROW in rows


def test_variables_are_defined_and_substitutable(dashboard):
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    for query in panel_queries(dashboard):
        used = set(re.findall(r"\$\{?(\w+)", query.expr)) - {"__rate_interval"}
        assert used <= defined, query.panel
        assert "$" not in substitute(query.expr)
    with pytest.raises(ValueError, match="unknown dashboard variable"):
        substitute("rate(aim_requests_total[$nope])")


def test_dashboard_provider_loads_files_from_a_path():
    (path,) = (PROVISIONING / "dashboards").glob("*.yml")
    config = yaml.safe_load(path.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
