"""Everything a running service holds, built in the app's lifespan and torn down in reverse.

Boundaries are passed in: tests build `Components` with a real Redis of their own, a small model and a
fresh metrics registry, exactly as `start_components` does for the real service.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from service.api.admission import budget_for
from service.api.policy import FocusResolver, label_resolver
from service.metrics import Metrics
from service.models import LoadedModel, calibration_logits, load_model
from service.modulation.calibration import Top1Curve, solve_sigma
from service.modulation.keys import derive_projection_key
from service.presets import resolve_model_path
from service.serving.batcher import BatchStats, DynamicBatcher
from service.serving.generation import BuiltinEngine, GenerationEngine, StepStats, focus_token_ids
from service.serving.generation.admission import Admitted
from service.serving.predict import Row
from service.serving.traffic import TrafficSample
from service.settings import Settings
from service.store import EmbeddedRedis, RateLimiter, RedisGate, RequestRecords, TenantStore
from service.store.persistence import check_persistence
from service.tasks import batched
from service.tiers import TierRegistry

log = logging.getLogger("aimserve")


@dataclass
class Components:
    settings: Settings
    model: LoadedModel
    store: TenantStore
    limiter: RateLimiter
    tiers: TierRegistry
    metrics: Metrics
    records: RequestRecords
    focus_resolver: FocusResolver
    traffic: TrafficSample = field(default_factory=TrafficSample)
    batcher: DynamicBatcher[Row, Any] | None = None
    generator: GenerationEngine | None = None
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def predictor(self) -> DynamicBatcher[Row, Any]:
        """The batcher of a classification or segmentation model (routes check the task first)."""
        assert self.batcher is not None
        return self.batcher

    @property
    def queue_depth(self) -> int:
        if self.batcher is not None:
            return self.batcher.depth
        return self.generator.queue_depth if self.generator is not None else 0

    async def reload_tiers(self) -> None:
        """Reload tiers.yaml now; an invalid file raises BadInput and leaves the tiers in force."""
        await asyncio.to_thread(self.tiers.reload_or_raise)

    async def end_streams_after(self, grace_s: float) -> None:
        """After SIGTERM: give running requests ``grace_s`` seconds, then end every generation still
        running with a final ``shutting_down`` error event (classification waits are bounded by
        ``AIM_MAX_QUEUE_WAIT_S`` and need no such step)."""
        await asyncio.sleep(grace_s)
        if self.generator is not None:
            log.warning("shutdown grace of %g s is over: ending the streams still running", grace_s)
            self.generator.end_all()

    async def aclose(self) -> None:
        await self._stack.aclose()


def fidelity_solver(model: LoadedModel) -> Callable[[float], float]:
    """σ for a target fidelity on the model's calibration inputs.

    The calibration logits and their `Top1Curve` are computed once, on first use, and shared by every
    tier and every reload.
    """
    cache: dict[str, Top1Curve] = {}

    def solve(target: float) -> float:
        if "curve" not in cache:
            cache["curve"] = Top1Curve(calibration_logits(model)[0])
        return solve_sigma(cache["curve"], target).sigma

    return solve


def on_batch(metrics: Metrics, task: str) -> Callable[[BatchStats], None]:
    def observe(stats: BatchStats) -> None:
        metrics.observe_batch(stats.size)
        metrics.observe_forward(task, stats.run_seconds)
        for wait, row in zip(stats.waits, stats.payloads, strict=True):
            metrics.observe_queue_wait(getattr(row, "tag", "-"), wait)

    return observe


def step_hook(metrics: Metrics, task: str) -> Callable[[StepStats], None]:
    """Per decoding step, from the engine's worker thread (prometheus_client is thread-safe)."""

    def observe(stats: StepStats) -> None:
        metrics.observe_batch(stats.batch_size)
        metrics.observe_forward(task, stats.step_s)
        metrics.set_queue_depth(stats.queue_depth)

    return observe


async def start_components(
    settings: Settings,
    model_ref: str,
    tiers_path: Path,
    *,
    registry: CollectorRegistry | None = None,
    task: str | None = None,
    watch_tiers: bool = True,
) -> Components:
    """Start Redis (embedded unless REDIS_URL), load the model and tiers, start the batcher."""
    stack = AsyncExitStack()
    try:
        metrics = Metrics(registry if registry is not None else CollectorRegistry(), settings.latency_buckets)
        url = settings.redis_url
        if url is None:
            embedded = EmbeddedRedis(settings.state_dir / "redis")
            url = await asyncio.to_thread(embedded.start)
            stack.callback(embedded.stop)
        gate = RedisGate.from_url(
            url,
            timeout_s=settings.redis_timeout_s,
            slots=settings.redis_pool_size,
            slot_wait_s=settings.redis_pool_wait_s,
        )
        gate.observer = metrics.observe_redis_call
        stack.push_async_callback(gate.aclose)
        await gate.warm()
        path = resolve_model_path(model_ref, settings.state_dir)
        model = await asyncio.to_thread(load_model, path, task=task)
        metrics.set_model_info(
            model.name, model.task, str(model.device), str(model.dtype).removeprefix("torch.")
        )
        targets: dict[str, TierRegistry] = {}
        tiers = TierRegistry(tiers_path, fidelity_solver(model), on_reload=_reload_hook(metrics, targets))
        targets["registry"] = tiers
        await asyncio.to_thread(tiers.reload_or_raise)
        store = TenantStore(
            gate, settings.secret, cache_ttl_s=settings.key_cache_ttl_s, grace_s=settings.redis_grace_s
        )
        await store.start()
        metrics.set_redis_persistence(await check_persistence(gate.redis))
        stack.push_async_callback(store.close)
        if watch_tiers:
            stack.push_async_callback(tiers.stop_watching)
            tiers.start_watching()
        c = Components(
            settings,
            model,
            store,
            RateLimiter(gate),
            tiers,
            metrics,
            RequestRecords(gate),
            _resolver(model),
            _stack=stack,
        )
        c.records.start()
        stack.push_async_callback(c.records.aclose)
        await _start_engine(c)
        return c
    except BaseException:
        await stack.aclose()
        raise


def _reload_hook(
    metrics: Metrics, holder: dict[str, TierRegistry]
) -> Callable[[str, dict[str, float]], None]:
    """Count every load; on success export each tier's σ in force and its promised fidelity.

    ``holder["registry"]`` is the registry the hook belongs to (set right after it is built)."""

    def hook(status: str, sigmas: dict[str, float]) -> None:
        metrics.count_tier_reload(status)
        if status == "ok":
            metrics.set_tiers(sigmas)
            tiers = holder["registry"].current.tiers.values()
            metrics.set_tier_targets(
                {t.name: t.target_fidelity for t in tiers if t.target_fidelity is not None}
            )

    return hook


def _resolver(model: LoadedModel) -> FocusResolver:
    """Focus targets -> class or token ids. Every request of a focused tenant resolves its targets, so
    the generation resolver memoises tokenization per target list (a tenant has one at a time)."""
    if model.kind.generates:
        tokenizer = model.tokenizer

        @functools.lru_cache(maxsize=4096)
        def tokens(strings: tuple[str, ...]) -> tuple[int, ...]:
            return focus_token_ids(tokenizer, strings)

        def resolve(strings: Sequence[str]) -> tuple[int, ...]:
            return tokens(tuple(strings))

        return resolve
    return label_resolver(model.labels)


def generation_engine(c: Components) -> GenerationEngine:
    """The engine ``AIM_ENGINE`` / ``--engine`` chose, for the loaded text-generation model, behind the
    compute budget and the per-tenant stream cap (`Admitted`: the same for both engines)."""
    s = c.settings
    return Admitted(_engine(c), max_request_tokens=s.max_request_tokens, tenant_max_rows=s.tenant_max_rows)


def _engine(c: Components) -> GenerationEngine:
    s, model = c.settings, c.model
    if s.engine == "vllm":
        from service.serving.generation.vllm.engine import vllm_engine

        return vllm_engine(model, s)
    return BuiltinEngine(
        model.model,
        model.tokenizer,
        device=model.device,
        max_batch_size=s.max_batch_size,
        max_wait_ms=s.max_wait_ms,
        max_queue=s.queue_size,
        metrics_hook=step_hook(c.metrics, model.task),
    )


async def _start_engine(c: Components) -> None:
    s, model = c.settings, c.model
    if model.kind.generates:
        c.generator = generation_engine(c)
        await c.generator.start()
        c._stack.push_async_callback(c.generator.stop)
        return
    task = batched(model.kind)
    projection = derive_projection_key(s.secret)
    c.batcher = DynamicBatcher[Row, Any](
        lambda rows: task.run_batch(model, rows, projection),
        max_batch_size=s.max_batch_size,
        max_wait_s=s.max_wait_ms / 1000,
        max_queue=s.queue_size,
        on_batch=on_batch(c.metrics, model.task),
        max_tenant_rows=s.tenant_max_rows,
        # A higher tier's row waits for at most one batch of this cost (see service.api.admission).
        max_batch_cost=budget_for(s, task).per_batch,
        max_queue_wait_s=s.max_queue_wait_s,
    )
    await c.batcher.start()
    c._stack.push_async_callback(c.batcher.stop)
