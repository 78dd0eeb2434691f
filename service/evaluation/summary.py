"""Reading a utility curve: its three stages (flat, steep, floor) and how well exact matches sampled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

_SCALE_OUTPUTS = 1_000_000  # outputs the logit-scale quantiles are taken over (evenly spaced beyond that)


def crossing(sigmas: Sequence[float], values: Sequence[float], level: float) -> float | None:
    """The first σ where a decreasing curve reaches ``level`` (linear interpolation), None if never."""
    for i in range(1, len(sigmas)):
        a, b = values[i - 1], values[i]
        if a > level >= b:
            return sigmas[i - 1] + (sigmas[i] - sigmas[i - 1]) * (a - level) / (a - b)
    return None


def stages(sigmas: Sequence[float], values: Sequence[float], chance: float) -> dict[str, Any]:
    """Where the curve has lost 10 %, 50 % and 90 % of the way from its σ = sigmas[0] value to chance.

    Flat stage: σ below ``sigma_10``; steep stage: ``sigma_10`` to ``sigma_90``; floor: beyond ``sigma_90``.
    ``floor_gap`` is the last value minus chance (how far above guessing the curve still is at the end).
    """
    clean = values[0]
    span = clean - chance
    out: dict[str, Any] = {
        "clean": clean,
        "chance": chance,
        "last": values[-1],
        "floor_gap": values[-1] - chance,
    }
    for share in (10, 50, 90):
        out[f"sigma_{share}"] = crossing(sigmas, values, clean - span * share / 100.0) if span > 0 else None
    return out


def agreement(rows: Sequence[Mapping[str, float | int]], metric: str) -> dict[str, float]:
    """Largest |exact - sampled mean| over the σ grid, absolute and in standard errors (an se of 0, as at
    σ = 0 where both must be equal, counts as 1e-12 so that any mismatch there shows as huge)."""
    worst_abs = worst_z = 0.0
    for row in rows:
        gap = abs(float(row[f"{metric}_exact"]) - float(row[f"{metric}_mean"]))
        se = float(row[f"{metric}_se"])
        worst_abs = max(worst_abs, gap)
        worst_z = max(worst_z, gap / max(se, 1e-12))
    return {"max_abs_gap": worst_abs, "max_gap_in_se": worst_z}


def logit_scale(logits: torch.Tensor) -> dict[str, float]:
    """How far the top logit stands out, in logit units: quantiles over outputs (items, or pixels for
    (N, C, h, w) logits) of the top-1 minus top-2 gap, and the mean per-output standard deviation of the
    logits. σ is in the same units, so these place a model's steep stage (the paper's logit scale)."""
    flat = logits.movedim(1, -1).reshape(-1, logits.shape[1]) if logits.dim() == 4 else logits
    flat = flat[:: max(1, len(flat) // _SCALE_OUTPUTS)].double()
    top = flat.topk(2, dim=-1).values
    gap = top[:, 0] - top[:, 1]
    levels = {"gap_p10": 0.1, "gap_p25": 0.25, "gap_median": 0.5, "gap_p75": 0.75, "gap_p90": 0.9}
    out = {name: round(float(gap.quantile(q)), 4) for name, q in levels.items()}
    out["logit_std_mean"] = round(float(flat.std(dim=-1).mean()), 4)
    return out
