"""`service.metrics.Metrics` on fresh registries, read back through the text exposition parser."""

from __future__ import annotations

import inspect

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from service.errors import ConfigError
from service.metrics import DEFAULT_LATENCY_BUCKETS, NO_TIER, Metrics, parse_buckets, render

FAMILIES = {
    "aim_requests": "counter",
    "aim_request_duration_seconds": "histogram",
    "aim_queue_wait_seconds": "histogram",
    "aim_queue_depth": "gauge",
    "aim_batch_size": "histogram",
    "aim_forward_seconds": "histogram",
    "aim_fidelity_matches": "counter",
    "aim_fidelity_rows": "counter",
    "aim_feedback_correct": "counter",
    "aim_feedback": "counter",
    "aim_tier_sigma": "gauge",
    "aim_tier_target_fidelity": "gauge",
    "aim_generated_tokens": "counter",
    "aim_time_to_first_token_seconds": "histogram",
    "aim_inter_token_seconds": "histogram",
    "aim_redis_errors": "counter",
    "aim_redis_duration_seconds": "histogram",
    "aim_tier_reloads": "counter",
    "aim_redis_persistence": "gauge",
    "aim_model": "info",
}
ALLOWED_LABELS = {"tier", "route", "status", "task", "op", "le"}
MODEL_INFO_LABELS = {"name", "task", "device", "dtype"}


def exercised(metrics: Metrics) -> Metrics:
    """Call every method once so every family has samples."""
    metrics.observe_request("free", "/v1/classify", 200, 0.02)
    metrics.observe_request(NO_TIER, "/v1/classify", 401, 0.001)
    metrics.observe_queue_wait("free", 0.003)
    metrics.set_queue_depth(3)
    metrics.observe_batch(8)
    metrics.observe_forward("text-classification", 0.04)
    metrics.count_fidelity("free", 7, 10)
    metrics.count_feedback("free", True)
    metrics.count_feedback("free", False)
    metrics.set_tier_sigma("free", 1.25)
    metrics.set_tier_targets({"free": 0.7})
    metrics.observe_tokens("free", 12)
    metrics.observe_ttft("free", 0.2)
    metrics.observe_inter_token("free", 0.03)
    metrics.observe_redis("resolve_key", 0.0004)
    metrics.count_redis_error("rate_limit")
    metrics.count_tier_reload("ok")
    metrics.set_redis_persistence(2)
    metrics.set_model_info("smollm2-135m", "text-generation", "cpu", "float32")
    return metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, keyed by (sample name, labels)."""
    text = render(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def test_every_family_is_registered_with_its_type_and_exposed():
    metrics = exercised(Metrics(CollectorRegistry()))
    assert {f.name: f.type for f in metrics.registry.collect()} == FAMILIES
    exposed = {name for name, _ in samples(metrics)}
    suffix = {"counter": "_total", "histogram": "_bucket", "gauge": "", "info": "_info"}
    assert {name + suffix[kind] for name, kind in FAMILIES.items()} <= exposed


def test_labels_are_bounded_and_never_name_a_tenant_or_key():
    metrics = exercised(Metrics(CollectorRegistry()))
    for name, labels in samples(metrics):
        names = {k for k, _ in labels}
        allowed = MODEL_INFO_LABELS if name == "aim_model_info" else ALLOWED_LABELS
        assert names <= allowed, (name, names)
        assert not names & {"tenant", "tenant_id", "key", "api_key", "key_id", "secret"}


def test_no_method_takes_a_tenant_or_key():
    params = {
        p
        for name, fn in inspect.getmembers(Metrics, inspect.isfunction)
        if not name.startswith("_")
        for p in inspect.signature(fn).parameters
    }
    assert not {p for p in params if "tenant" in p or "key" in p or "secret" in p}


def test_default_latency_buckets_span_1ms_to_60s():
    metrics = exercised(Metrics(CollectorRegistry()))
    bounds = sorted(
        float(dict(labels)["le"])
        for name, labels in samples(metrics)
        if name == "aim_request_duration_seconds_bucket" and ("tier", "free") in labels
    )
    assert bounds[0] == 0.001
    assert bounds[-2] == 60.0
    assert bounds[-1] == float("inf")
    assert tuple(bounds[:-1]) == DEFAULT_LATENCY_BUCKETS


def test_custom_latency_buckets_apply_to_latency_histograms_only():
    metrics = exercised(Metrics(CollectorRegistry(), latency_buckets=[0.05, 0.5, 5]))
    les = {
        name: sorted(float(dict(labels)["le"]) for n, labels in samples(metrics) if n == name)
        for name in ("aim_queue_wait_seconds_bucket", "aim_batch_size_bucket")
    }
    assert les["aim_queue_wait_seconds_bucket"] == [0.05, 0.5, 5.0, float("inf")]
    assert les["aim_batch_size_bucket"][0] == 1.0
    assert (
        value(metrics, "aim_request_duration_seconds_bucket", tier="free", route="/v1/classify", le="0.05")
        == 1
    )


@pytest.mark.parametrize("bad", [[], [0.1, 0.1], [1.0, 0.5], [-1.0, 1.0], [0.1, float("inf")], [0.0, 1.0]])
def test_invalid_latency_buckets_are_rejected_naming_the_setting(bad):
    with pytest.raises(ConfigError, match="latency_buckets"):
        Metrics(CollectorRegistry(), latency_buckets=bad)


def test_parse_buckets():
    assert parse_buckets("0.01, 0.1,1,") == (0.01, 0.1, 1.0)
    with pytest.raises(ConfigError, match=r"AIM_LATENCY_BUCKETS='0\.1,fast'"):
        parse_buckets("0.1,fast")
    with pytest.raises(ConfigError, match="MY_BUCKETS"):
        parse_buckets("1,0.5", setting="MY_BUCKETS")


def test_quality_counters_count_matches_and_labels():
    metrics = exercised(Metrics(CollectorRegistry()))
    metrics.count_fidelity("free", 2, 5)
    assert value(metrics, "aim_fidelity_matches_total", tier="free") == 9
    assert value(metrics, "aim_fidelity_rows_total", tier="free") == 15
    assert value(metrics, "aim_feedback_correct_total", tier="free") == 1
    assert value(metrics, "aim_feedback_total", tier="free") == 2
    assert value(metrics, "aim_generated_tokens_total", tier="free") == 12


def test_requests_are_counted_by_status():
    metrics = exercised(Metrics(CollectorRegistry()))
    metrics.observe_request("free", "/v1/classify", 200, 0.5)
    assert value(metrics, "aim_requests_total", tier="free", route="/v1/classify", status="200") == 2
    assert value(metrics, "aim_requests_total", tier=NO_TIER, route="/v1/classify", status="401") == 1
    assert value(metrics, "aim_request_duration_seconds_sum", tier="free", route="/v1/classify") == 0.52


def test_set_tiers_replaces_sigmas_and_drops_removed_tiers_but_keeps_their_counters():
    metrics = exercised(Metrics(CollectorRegistry()))
    metrics.set_tiers({"premium": 0.0, "standard": 1.0})
    sigmas = {
        dict(labels)["tier"]: v for (name, labels), v in samples(metrics).items() if name == "aim_tier_sigma"
    }
    assert sigmas == {"premium": 0.0, "standard": 1.0}
    assert value(metrics, "aim_fidelity_rows_total", tier="free") == 10
    metrics.set_tiers({"premium": 0.0})
    assert [k for k in samples(metrics) if k[0] == "aim_tier_sigma"] == [
        ("aim_tier_sigma", frozenset({("tier", "premium")}))
    ]


def test_set_tier_targets_replaces_the_promises_in_force():
    metrics = Metrics(CollectorRegistry())
    metrics.set_tier_targets({"free": 0.7, "standard": 0.9})
    metrics.set_tier_targets({"free": 0.75})  # standard now has a fixed sigma: no promise to alert on
    targets = {
        dict(labels)["tier"]: v
        for (name, labels), v in samples(metrics).items()
        if name == "aim_tier_target_fidelity"
    }
    assert targets == {"free": 0.75}


def test_a_new_tier_starts_its_quality_counters_at_zero():
    metrics = Metrics(CollectorRegistry())
    metrics.set_tier_sigma("gold", 0.5)
    for name in ("aim_fidelity_matches_total", "aim_fidelity_rows_total", "aim_feedback_correct_total"):
        assert value(metrics, name, tier="gold") == 0


def test_ops_series_exist_at_zero_before_any_error():
    metrics = Metrics(CollectorRegistry())
    assert value(metrics, "aim_tier_reloads_total", status="ok") == 0
    assert value(metrics, "aim_tier_reloads_total", status="failed") == 0
    metrics.observe_redis("resolve_key", 0.001)
    assert value(metrics, "aim_redis_errors_total", op="resolve_key") == 0
    metrics.count_tier_reload("failed")
    metrics.count_redis_error("resolve_key")
    assert value(metrics, "aim_tier_reloads_total", status="failed") == 1
    assert value(metrics, "aim_redis_errors_total", op="resolve_key") == 1


def test_model_info_is_one_series_replaced_on_each_call():
    metrics = exercised(Metrics(CollectorRegistry()))
    metrics.set_model_info("minilm", "text-classification", "cuda:0", "float16")
    infos = [labels for name, labels in samples(metrics) if name == "aim_model_info"]
    assert infos == [
        frozenset(
            {("name", "minilm"), ("task", "text-classification"), ("device", "cuda:0"), ("dtype", "float16")}
        )
    ]
    assert value(metrics, "aim_queue_depth") == 3


def test_registries_are_isolated_and_the_global_one_is_untouched():
    first, second = exercised(Metrics(CollectorRegistry())), Metrics(CollectorRegistry())
    assert value(first, "aim_fidelity_rows_total", tier="free") == 10
    assert ("aim_fidelity_rows_total", frozenset({("tier", "free")})) not in samples(second)
    assert not [f.name for f in REGISTRY.collect() if f.name.startswith("aim_")]
    with pytest.raises(ValueError, match="Duplicated"):
        Metrics(first.registry)


def test_metric_names_lists_every_sample_name():
    names = Metrics(CollectorRegistry()).metric_names()
    assert {
        "aim_requests_total",
        "aim_request_duration_seconds_bucket",
        "aim_model_info",
        "aim_tier_sigma",
    } <= names
    assert all(name.startswith("aim_") for name in names)
