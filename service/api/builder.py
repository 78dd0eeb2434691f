"""Builds the service's `Components` and owns their lifecycle.

`build_components` is an async context manager: it starts every collaborator in order, yields the
immutable record, and stops them in reverse when the block exits (its exit stack never leaves it). The
boundaries can be passed in: a loaded model instead of a preset name, a started `TenantStore` over a
Redis of the caller's (the caller closes it), a metrics registry. `aimserve serve` and `tests/live.py`
pass names; fast tests pass a tiny model and a store of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry

from service.api.admission import budget_for
from service.api.components import (
    Batcher,
    Components,
    fidelity_solver,
    focus_resolver,
    on_batch,
    reload_hook,
    step_hook,
)
from service.metrics import Metrics
from service.models import LoadedModel, load_model
from service.modulation.keys import derive_projection_key
from service.presets import resolve_model_path
from service.serving.generation import BuiltinEngine, GenerationEngine
from service.serving.generation.admission import Admitted
from service.settings import Settings
from service.store import EmbeddedRedis, RateLimiter, RedisGate, RequestRecords, TenantStore
from service.store.persistence import check_persistence
from service.tasks import batched
from service.tiers import TierRegistry


@asynccontextmanager
async def build_components(
    settings: Settings,
    tiers_path: Path,
    *,
    model: LoadedModel | str,
    store: TenantStore | None = None,
    registry: CollectorRegistry | None = None,
    task: str | None = None,
    watch_tiers: bool = True,
) -> AsyncIterator[Components]:
    """Start the service's collaborators; stop them in reverse when the block exits (or start-up fails).

    ``model``: a loaded model, or a preset name or model folder to load (``task`` overrides the task
    inferred from its config). ``store``: a started store whose gate the rate limiter and the request
    records share, left open at exit; None connects to ``REDIS_URL`` (an embedded Redis when unset) and
    closes what it opened. ``registry``: where the metrics are registered (a fresh one when None).
    """
    async with AsyncExitStack() as stack:
        metrics = Metrics(registry if registry is not None else CollectorRegistry(), settings.latency_buckets)
        if store is None:
            store = await _open_store(stack, settings, metrics)
        if not isinstance(model, LoadedModel):
            path = resolve_model_path(model, settings.state_dir)
            model = await asyncio.to_thread(load_model, path, task=task)
        metrics.set_model_info(
            model.name, model.task, str(model.device), str(model.dtype).removeprefix("torch.")
        )
        tiers = await _tiers(stack, tiers_path, model, settings.secret, metrics, watch=watch_tiers)
        metrics.set_redis_persistence(await check_persistence(store.gate.redis))
        records = RequestRecords(store.gate)
        records.start()
        stack.push_async_callback(records.aclose)
        batcher, engine = await _start_serving(stack, settings, model, metrics)
        yield Components(
            settings,
            model,
            store,
            RateLimiter(store.gate),
            tiers,
            metrics,
            records,
            focus_resolver(model),
            batcher=batcher,
            engine=engine,
        )


async def _open_store(stack: AsyncExitStack, settings: Settings, metrics: Metrics) -> TenantStore:
    """Redis (embedded unless REDIS_URL), its gate timed into ``metrics``, and the started store."""
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
    store = TenantStore(
        gate, settings.secret, cache_ttl_s=settings.key_cache_ttl_s, grace_s=settings.redis_grace_s
    )
    await store.start()
    stack.push_async_callback(store.close)
    return store


async def _tiers(
    stack: AsyncExitStack,
    path: Path,
    model: LoadedModel,
    secret: bytes,
    metrics: Metrics,
    *,
    watch: bool,
) -> TierRegistry:
    """The tiers file loaded (an invalid one raises), σ solved for ``model`` and the draws ``secret``
    serves, watched when ``watch``."""
    holder: dict[str, TierRegistry] = {}
    tiers = TierRegistry(path, fidelity_solver(model, secret), on_reload=reload_hook(metrics, holder))
    holder["registry"] = tiers
    await asyncio.to_thread(tiers.reload_or_raise)
    if watch:
        stack.push_async_callback(tiers.stop_watching)
        tiers.start_watching()
    return tiers


def generation_engine(settings: Settings, model: LoadedModel, metrics: Metrics) -> GenerationEngine:
    """The engine ``AIM_ENGINE`` / ``--engine`` chose, for the loaded text-generation model, behind the
    compute budget and the per-tenant stream cap (`Admitted`: the same for both engines)."""
    return Admitted(
        _engine(settings, model, metrics),
        max_request_tokens=settings.max_request_tokens,
        tenant_max_rows=settings.tenant_max_rows,
    )


def _engine(settings: Settings, model: LoadedModel, metrics: Metrics) -> GenerationEngine:
    if settings.engine == "vllm":
        from service.serving.generation.vllm.engine import vllm_engine

        return vllm_engine(model, settings)
    return BuiltinEngine(
        model.model,
        model.tokenizer,
        device=model.device,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.queue_size,
        metrics_hook=step_hook(metrics, model.task),
    )


async def _start_serving(
    stack: AsyncExitStack, s: Settings, model: LoadedModel, metrics: Metrics
) -> tuple[Batcher | None, GenerationEngine | None]:
    """The model's engine (text generation) or batcher (every other task), started."""
    if model.kind.generates:
        engine = generation_engine(s, model, metrics)
        await engine.start()
        stack.push_async_callback(engine.stop)
        return None, engine
    task = batched(model.kind)
    projection = derive_projection_key(s.secret)
    batcher = Batcher(
        lambda rows: task.run_batch(model, rows, projection),
        max_batch_size=s.max_batch_size,
        max_wait_s=s.max_wait_ms / 1000,
        max_queue=s.queue_size,
        on_batch=on_batch(metrics, model.task),
        max_tenant_rows=s.tenant_max_rows,
        # A higher tier's row waits for at most one batch of this cost (see service.api.admission).
        max_batch_cost=budget_for(s, task).per_batch,
        max_queue_wait_s=s.max_queue_wait_s,
    )
    await batcher.start()
    stack.push_async_callback(batcher.stop)
    return batcher, None
