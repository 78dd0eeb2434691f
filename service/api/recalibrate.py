"""Re-solving a tier's σ from live traffic: the clean logits it recently served, each tenant's weight capped.

A tier stated as ``target_fidelity`` is solved on the model's calibration inputs, which may not look like the
traffic it serves. :func:`recalibrate` solves the same target on a bounded sample of the tier's recently
served unmodulated logits (`service.serving.traffic.TrafficSample`, no tenant above ``max_share`` of it),
then applies the σ live (`TierRegistry.apply_sigma`) or writes it beside the target in tiers.yaml (comments
kept; the file watcher puts it in force), or only reports it.

Classification rows carry their unit noise as served (keyed by the server secret and the tier): the σ is then
solved on those very draws (`service.modulation.served`, ``draws: "keyed"``), the served fidelity on the
sample, exactly as at load (`service.serving.served_calibration`). A sample holding any row without it (a
focus tenant's: focus noise cannot be told from utility noise in the served logits; generation, whose noise
is one draw per decoding position) is solved for independent draws (``draws: "independent"``).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any, Literal

from service.errors import BadInput
from service.modulation.calibration import Top1Curve, solve_sigma
from service.modulation.served import flip_sigmas, served_fidelity, solve_served_sigma
from service.serving.traffic import TrafficSample
from service.tiers import TierRegistry
from service.tiers.tierfile import write_tier_calibration

#: Fewest sampled rows a σ is re-solved from: below it the fidelity estimate's standard error exceeds ~3
#: points (binomial, p = 0.7).
MIN_TRAFFIC_ROWS = 250
Apply = Literal["live", "file", "none"]
Draws = Literal["keyed", "independent"]


@dataclass(frozen=True, slots=True)
class Recalibration:
    """What a recalibration found: ``fidelity_before`` / ``fidelity_after`` are the top-1 agreement on the
    sampled traffic at the old and the new σ: served on its own draws (``draws`` "keyed"), or the exact
    expectation over independent draws ("independent")."""

    tier: str
    target_fidelity: float
    sigma_before: float
    sigma: float
    fidelity_before: float
    fidelity_after: float
    rows: int
    tenants: int
    max_share: float
    applied: Apply
    draws: Draws = "independent"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def solve_from_traffic(
    sample: TrafficSample, tier: str, target: float, sigma_now: float, max_share: float
) -> tuple[float, float, float, int, int, Draws]:
    """(new σ, fidelity at ``sigma_now`` and at the new σ, rows, tenants, draws) on the tier's sample."""
    logits, noise, tenants = sample.sample_with_noise(tier, max_share)
    if len(logits) < MIN_TRAFFIC_ROWS:
        raise BadInput(
            f"tier {tier!r} has served {len(logits)} sampled outputs; at least {MIN_TRAFFIC_ROWS} are needed "
            "to re-solve its sigma from traffic",
            code="not_enough_traffic",
        )
    try:
        if noise is not None:
            flips = flip_sigmas(logits, noise)
            served = solve_served_sigma(flips, target) if target < 1 else None
            sigma, after = (served.sigma, served.achieved) if served is not None else (0.0, 1.0)
            return sigma, served_fidelity(flips, sigma_now), after, len(logits), tenants, "keyed"
        curve = Top1Curve(logits)
        result = solve_sigma(curve, target)
    except ValueError as exc:
        raise BadInput(f"target_fidelity {target:g} on tier {tier!r}'s traffic: {exc}") from None
    return result.sigma, curve.mean(sigma_now), result.achieved, len(logits), tenants, "independent"


async def reload_now(tiers: TierRegistry) -> None:
    """Reload tiers.yaml now; an invalid file raises BadInput and leaves the tiers in force."""
    await asyncio.to_thread(tiers.reload_or_raise)


async def recalibrate(
    tiers: TierRegistry,
    traffic: TrafficSample,
    tier_name: str,
    target: float | None,
    max_share: float,
    apply: Apply,
) -> Recalibration:
    """Re-solve ``tier_name``'s σ for ``target`` (default: the tier's own target) and apply it as asked."""
    tier = tiers.require(tier_name)
    goal = target if target is not None else tier.target_fidelity
    if goal is None:
        raise BadInput(
            f"tier {tier_name!r} has a fixed sigma and no target_fidelity; give target_fidelity",
            code="no_target",
        )
    sigma, before, after, rows, tenants, draws = await asyncio.to_thread(
        solve_from_traffic, traffic, tier_name, goal, tier.sigma, max_share
    )
    if apply == "live":
        tiers.apply_sigma(tier_name, sigma)
    elif apply == "file":
        note = f"re-solved from {rows} served outputs of {tenants} tenants for target_fidelity {goal:g}"
        await asyncio.to_thread(write_tier_calibration, tiers.path, tier_name, sigma, goal, note)
        await reload_now(tiers)
    return Recalibration(
        tier_name, goal, tier.sigma, sigma, before, after, rows, tenants, max_share, apply, draws
    )
