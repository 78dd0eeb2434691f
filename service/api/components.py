"""What a running service holds: an immutable record of its collaborators, and the hooks that wire them.

`service.api.builder.build_components` starts them (its exit stack, private to it, stops them in reverse);
routes never see the record: each receives the collaborators it uses through its own dependency
(`service.api.deps`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.api.policy import FocusResolver, label_resolver
from service.metrics import Metrics
from service.models import LoadedModel, calibration_logits
from service.modulation.calibration import Top1Curve, solve_sigma
from service.serving.batcher import BatchStats, DynamicBatcher
from service.serving.generation import GenerationEngine, StepStats, focus_token_ids
from service.serving.predict import Row
from service.serving.served_calibration import ServedCalibration, calibration_rows
from service.serving.traffic import TrafficSample
from service.settings import Settings
from service.store import RateLimiter, RequestRecords, TenantStore
from service.tasks.classes import Classifier, smoothness_for
from service.tiers import SigmaSolver, TierRegistry

log = logging.getLogger("aimserve")

Batcher = DynamicBatcher[Row, Any]
"""The batcher of a classification or segmentation model."""


@dataclass(frozen=True, slots=True)
class Components:
    """The started collaborators; exactly one of ``batcher`` (classification, segmentation) and ``engine``
    (text generation) is set, as the model's task says."""

    settings: Settings
    model: LoadedModel
    store: TenantStore
    limiter: RateLimiter
    tiers: TierRegistry
    metrics: Metrics
    records: RequestRecords
    focus_resolver: FocusResolver
    traffic: TrafficSample = field(default_factory=TrafficSample)
    batcher: Batcher | None = None
    engine: GenerationEngine | None = None

    @property
    def queue_depth(self) -> int:
        if self.batcher is not None:
            return self.batcher.depth
        return self.engine.queue_depth if self.engine is not None else 0

    async def end_streams_after(self, grace_s: float) -> None:
        """After SIGTERM: give running requests ``grace_s`` seconds, then end every generation still
        running with a final ``shutting_down`` error event (classification waits are bounded by
        ``AIM_MAX_QUEUE_WAIT_S`` and need no such step)."""
        await asyncio.sleep(grace_s)
        if self.engine is not None:
            log.warning("shutdown grace of %g s is over: ending the streams still running", grace_s)
            self.engine.end_all()


def fidelity_solver(model: LoadedModel, secret: bytes) -> SigmaSolver:
    """σ for (tier, target fidelity) on the model's calibration inputs, computed once, on first use, and
    shared by every tier and every reload.

    Classifiers (noise keyed on the input's features, by the server secret and the tier): solved on the draws
    this deployment serves the calibration rows at that tier (`ServedCalibration`), so the fidelity it serves
    meets the target whatever the secret. Segmentation and generation (one draw per pixel or decoding
    position, so a fidelity over many averages over many draws): the expectation over independent draws
    (`Top1Curve`), which does not depend on the tier.
    """
    if isinstance(model.kind, Classifier):
        served: list[ServedCalibration] = []

        def solve_served(tier: str, target: float) -> float:
            if not served:
                logits, features = calibration_rows(model)
                served.append(ServedCalibration(logits, features, secret, smoothness_for(model.kind)))
            return served[0].solve(tier, target).sigma

        return solve_served
    cache: dict[str, Top1Curve] = {}

    def solve(tier: str, target: float) -> float:  # noqa: ARG001 (independent draws: the same for every tier)
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


def reload_hook(metrics: Metrics, holder: dict[str, TierRegistry]) -> Callable[[str, dict[str, float]], None]:
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


def focus_resolver(model: LoadedModel) -> FocusResolver:
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
