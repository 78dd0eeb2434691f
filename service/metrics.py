"""Every Prometheus metric of the service, built on a registry passed in (never the global one).

Names start with ``aim_``. Label names are only ``tier``, ``route``, ``status``, ``task`` and ``op`` (plus the
fixed ``name``/``task``/``device``/``dtype`` of the one ``aim_model_info`` series), so the number of series is
bounded by tiers x routes x statuses, never by tenants. Callers pass:

- ``tier``: a tier name from tiers.yaml, or `NO_TIER` when the request never resolved to a tenant (401 ...);
- ``route``: the route template (``"/v1/classify"``), never the raw path, or `UNMATCHED_ROUTE`;
- ``status``: the HTTP status code sent;
- ``op``: a fixed Redis operation name chosen by the store (``"resolve_key"``, ``"rate_limit"`` ...).

Per-tier quality is exported as counter pairs so PromQL computes ratios over any window::

    sum by (tier) (rate(aim_fidelity_matches_total[5m])) / sum by (tier) (rate(aim_fidelity_rows_total[5m]))
    # compared with the promise: aim_tier_target_fidelity (deploy/prometheus/rules.yml alerts on drift)
    sum by (tier) (rate(aim_feedback_correct_total[5m])) / sum by (tier) (rate(aim_feedback_total[5m]))

Durations are in seconds everywhere. The methods are on the hot path: they trust their inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from service.errors import ConfigError
from service.tiers.registry import RELOAD_STATUSES

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "CONTENT_TYPE",
    "DEFAULT_LATENCY_BUCKETS",
    "NO_TIER",
    "REDIS_BUCKETS",
    "TIER_RELOAD_STATUSES",
    "UNMATCHED_ROUTE",
    "Metrics",
    "parse_buckets",
    "render",
    "sample_names",
]

#: Upper bounds in seconds, 1 ms to 60 s, for request latency, queue wait, forward time and token timings.
DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: Redis round trips are sub-millisecond on a local network: 0.1 ms to 1 s.
REDIS_BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)
#: Rows per model forward.
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: The ``status`` values of ``aim_tier_reloads_total`` (applied, invalid file, refused by the reload guard).
TIER_RELOAD_STATUSES: tuple[str, ...] = RELOAD_STATUSES
#: ``tier`` label of requests that never resolved to a tenant (missing or unknown key).
NO_TIER = "-"
#: ``route`` label of requests that matched no route (404 on an unknown path).
UNMATCHED_ROUTE = "unmatched"
#: Content-Type of `render`'s output.
CONTENT_TYPE: str = CONTENT_TYPE_LATEST


def parse_buckets(text: str, *, setting: str = "AIM_LATENCY_BUCKETS") -> tuple[float, ...]:
    """Parse comma-separated bucket bounds in seconds (``"0.01,0.1,1"``); `ConfigError` names ``setting``."""
    try:
        bounds = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{setting}={text!r} is not a comma-separated list of seconds") from None
    return _checked_buckets(bounds, setting)


def _checked_buckets(bounds: Sequence[float], setting: str) -> tuple[float, ...]:
    values = tuple(float(b) for b in bounds)
    if not values:
        raise ConfigError(f"{setting} is empty; give at least one bucket bound in seconds")
    if any(not math.isfinite(b) or b <= 0 for b in values):
        raise ConfigError(f"{setting}={list(values)!r} must hold finite bounds > 0 seconds")
    if any(a >= b for a, b in pairwise(values)):
        raise ConfigError(f"{setting}={list(values)!r} must be strictly increasing")
    return values


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry`` (serve it with `CONTENT_TYPE`)."""
    return generate_latest(registry)


class Metrics:
    """All ``aim_*`` metrics on ``registry``.

    ``latency_buckets`` (seconds, strictly increasing, > 0; default `DEFAULT_LATENCY_BUCKETS`) applies to
    request latency, queue wait, forward time, time to first token and inter-token latency. Invalid buckets
    raise `ConfigError` at construction. Two `Metrics` on one registry raise ``ValueError`` (duplicate names).
    """

    def __init__(self, registry: CollectorRegistry, latency_buckets: Sequence[float] | None = None) -> None:
        self.registry = registry
        buckets = _checked_buckets(
            DEFAULT_LATENCY_BUCKETS if latency_buckets is None else latency_buckets, "latency_buckets"
        )
        self.latency_buckets = buckets
        t = ("tier",)
        self._requests = self._counter("aim_requests", "Requests answered.", ("tier", "route", "status"))
        self._latency = self._histogram(
            "aim_request_duration_seconds", "Request latency, receipt to response, s.", ("tier", "route")
        )
        self._queue_wait = self._histogram("aim_queue_wait_seconds", "Wait in the batcher queue, s.", t)
        self._queue_depth = Gauge(
            "aim_queue_depth", "Requests waiting in the batcher queue.", registry=registry
        )
        self._batch = self._histogram("aim_batch_size", "Rows per model forward.", (), BATCH_SIZE_BUCKETS)
        self._forward = self._histogram(
            "aim_forward_seconds", "Forward per batch or decoding step, s.", ("task",)
        )
        self._fid_matches = self._counter(
            "aim_fidelity_matches", "Rows/decoding steps whose modulated top-1 equals the unmodulated one.", t
        )
        self._fid_rows = self._counter("aim_fidelity_rows", "Rows/decoding steps compared for fidelity.", t)
        self._fb_correct = self._counter("aim_feedback_correct", "Labels equal to the served top-1.", t)
        self._fb_total = self._counter("aim_feedback", "Feedback labels received.", t)
        self._sigma = Gauge("aim_tier_sigma", "Effective sigma of each tier in force.", t, registry=registry)
        self._target = Gauge(
            "aim_tier_target_fidelity",
            "Promised top-1 fidelity of each tier given one.",
            t,
            registry=registry,
        )
        self._tokens = self._counter("aim_generated_tokens", "Tokens generated.", t)
        self._ttft = self._histogram("aim_time_to_first_token_seconds", "Receipt to first token, s.", t)
        self._inter_token = self._histogram("aim_inter_token_seconds", "Between consecutive tokens, s.", t)
        self._redis_errors = self._counter("aim_redis_errors", "Failed Redis operations.", ("op",))
        self._redis = self._histogram(
            "aim_redis_duration_seconds", "Redis operation latency, s.", ("op",), REDIS_BUCKETS
        )
        self._reloads = self._counter("aim_tier_reloads", "tiers.yaml reloads by outcome.", ("status",))
        self._persistence = Gauge(
            "aim_redis_persistence",
            "Redis persistence seen at start: 2 AOF, 1 RDB only, 0 none (data lost on restart), -1 unknown.",
            registry=registry,
        )
        self._persistence.set(-1)
        self._model = Info("aim_model", "The loaded model.", registry=registry)
        # Series that exist from the start read 0 instead of "no data" on the dashboard.
        for status in TIER_RELOAD_STATUSES:
            self._reloads.labels(status)

    def _counter(self, name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def _histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: Sequence[float] | None = None
    ) -> Histogram:
        bounds = self.latency_buckets if buckets is None else buckets
        return Histogram(name, doc, labels, buckets=bounds, registry=self.registry)

    # --- requests and batching -------------------------------------------------------------------------
    def observe_request(self, tier: str, route: str, status: int, seconds: float) -> None:
        """One answered request: counted by status, its latency observed per tier and route."""
        self._requests.labels(tier, route, str(status)).inc()
        self._latency.labels(tier, route).observe(seconds)

    def observe_queue_wait(self, tier: str, seconds: float) -> None:
        """Time one request (or row) waited before its batch ran."""
        self._queue_wait.labels(tier).observe(seconds)

    def set_queue_depth(self, n: int) -> None:
        """Requests currently waiting in the batcher queue."""
        self._queue_depth.set(n)

    def observe_batch(self, size: int) -> None:
        """Rows in one model forward."""
        self._batch.observe(size)

    def observe_forward(self, task: str, seconds: float) -> None:
        """One model forward (a batch, or a decoding step) of the model serving ``task``."""
        self._forward.labels(task).observe(seconds)

    # --- per-tier quality ------------------------------------------------------------------------------
    def count_fidelity(self, tier: str, matches: int, total: int) -> None:
        """``total`` rows (or decoding steps) compared; ``matches`` of them kept the unmodulated top-1."""
        self._fid_matches.labels(tier).inc(matches)
        self._fid_rows.labels(tier).inc(total)

    def count_feedback(self, tier: str, correct: bool) -> None:
        """One feedback label; ``correct`` when it equals the top-1 the tenant was served."""
        self._fb_correct.labels(tier).inc(1 if correct else 0)
        self._fb_total.labels(tier).inc()

    def set_tier_sigma(self, tier: str, sigma: float) -> None:
        """Effective sigma of ``tier`` (``target_fidelity`` solved); its quality counters start at 0."""
        self._sigma.labels(tier).set(sigma)
        for counter in (self._fid_matches, self._fid_rows, self._fb_correct, self._fb_total, self._tokens):
            counter.labels(tier)

    def set_tiers(self, sigmas: Mapping[str, float]) -> None:
        """Replace the tiers in force: set each sigma, drop the sigma series of tiers no longer present.

        Counters of removed tiers are kept: dropping them would turn their past into a counter reset.
        """
        for tier in self._sigma_tiers() - set(sigmas):
            self._sigma.remove(tier)
        for tier, sigma in sigmas.items():
            self.set_tier_sigma(tier, sigma)

    def set_tier_targets(self, targets: Mapping[str, float]) -> None:
        """Replace the promised fidelity per tier (tiers without a ``target_fidelity`` have no series)."""
        self._target.clear()
        for tier, target in targets.items():
            self._target.labels(tier).set(target)

    def _sigma_tiers(self) -> set[str]:
        return {s.labels["tier"] for m in self._sigma.collect() for s in m.samples}

    # --- generation ------------------------------------------------------------------------------------
    def observe_tokens(self, tier: str, n: int) -> None:
        """``n`` tokens generated for a request of ``tier``."""
        self._tokens.labels(tier).inc(n)

    def observe_ttft(self, tier: str, seconds: float) -> None:
        """Time from receipt of a generation request to its first token."""
        self._ttft.labels(tier).observe(seconds)

    def observe_inter_token(self, tier: str, seconds: float) -> None:
        """Time between two consecutive tokens of one generation."""
        self._inter_token.labels(tier).observe(seconds)

    # --- operations ------------------------------------------------------------------------------------
    def observe_redis(self, op: str, seconds: float) -> None:
        """One Redis operation's latency; also creates its error series at 0 so error panels show data."""
        self._redis.labels(op).observe(seconds)
        self._redis_errors.labels(op)

    def observe_redis_call(self, op: str, seconds: float | None, failed: bool) -> None:
        """A ``RedisGate.CallObserver``: every gated Redis call, timed once there."""
        if seconds is not None:
            self.observe_redis(op, seconds)
        if failed:
            self.count_redis_error(op)

    def count_redis_error(self, op: str) -> None:
        """One failed Redis operation (connection refused, timeout, script error)."""
        self._redis_errors.labels(op).inc()

    def count_tier_reload(self, status: str) -> None:
        """One tiers.yaml reload attempt (a `TIER_RELOAD_STATUSES` value); only ``ok`` changed the tiers."""
        self._reloads.labels(status).inc()

    def set_redis_persistence(self, value: int) -> None:
        """What Redis persists (`service.store.persistence.Persistence`: 2, 1, 0 or -1)."""
        self._persistence.set(value)

    def set_model_info(self, name: str, task: str, device: str, dtype: str) -> None:
        """Describe the loaded model (one ``aim_model_info`` series with value 1, replaced on each call)."""
        self._model.info({"name": name, "task": task, "device": device, "dtype": dtype})

    def metric_names(self) -> frozenset[str]:
        """Every sample name this registry can expose (``_total``, ``_bucket``, ``_sum``, ``_count`` ...)."""
        return frozenset(sample_names(self.registry))

    def render(self) -> bytes:
        """The text exposition of this registry."""
        return render(self.registry)


def sample_names(registry: CollectorRegistry) -> Iterable[str]:
    """Sample names of every ``aim_*`` family on ``registry``, including the type suffixes."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    for family in registry.collect():
        if family.name.startswith("aim_"):
            for suffix in suffixes.get(family.type, ("",)):
                yield family.name + suffix
