"""Paired statistics of the voting benchmark: a vote's gain over single-shot, and premium's as the baseline.

Scores are per item (1/0 for a correct label, or the share of premium's tokens matched), one tensor (N,)
per answer: ``"single"`` and one per vote (``"majority_31"``, ``"vote_9"``, ...). A gain is the mean of the
per-item difference vote - single; its standard error is the sample standard deviation of that difference
over sqrt(N) (paired over items, so what the items share cancels). ``ci95`` is gain ± 1.96 se.

Premium (σ = 0) voting over the same variants is the fair baseline: variants that change what the model
sees (a prefix, a mark, an emoji) can make even the clean model better (test-time augmentation), which no
keying of the noise can or should remove. What the tier promises is a distance from premium, so beside
each free gain stands premium's, the excess (free gain - premium gain, paired) and the gap to premium
single-shot and after both vote over the same variants.
"""

from __future__ import annotations

import math

import torch

Z95 = 1.96


def paired(diff: torch.Tensor) -> dict[str, float]:
    """Mean of a per-item difference (N,), its standard error and 95% interval."""
    d = diff.double()
    n = d.numel()
    mean = d.mean().item()
    se = d.std().item() / math.sqrt(n) if n > 1 else math.nan
    return {"gain": mean, "se": se, "ci95_low": mean - Z95 * se, "ci95_high": mean + Z95 * se}


def gains(scores: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per vote in ``scores``: the paired gain over ``scores["single"]``."""
    single = scores["single"]
    return {key: paired(s - single) for key, s in scores.items() if key != "single"}


def versus_premium(
    free: dict[str, torch.Tensor], premium: dict[str, torch.Tensor]
) -> dict[str, dict[str, float]]:
    """Per vote: the free tier's gain, premium's gain under the same attack, the excess (paired over
    items) and the gap premium - free single-shot and after both vote."""
    out = {}
    for key in free:
        if key == "single":
            continue
        free_gain = free[key] - free["single"]
        premium_gain = premium[key] - premium["single"]
        excess = paired(free_gain - premium_gain)
        out[key] = {
            "free_gain": free_gain.double().mean().item(),
            "free_se": paired(free_gain)["se"],
            "premium_gain": premium_gain.double().mean().item(),
            "premium_se": paired(premium_gain)["se"],
            "excess": excess["gain"],
            "excess_se": excess["se"],
            "gap_single": (premium["single"] - free["single"]).double().mean().item(),
            "gap_voted": (premium[key] - free[key]).double().mean().item(),
        }
    return out


def summary(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean of every answer's score, and ``max_gain``: the best vote's mean minus single-shot's (a
    maximum over votes, so biased upwards: read it with the per-vote standard errors)."""
    row = {key: s.double().mean().item() for key, s in scores.items()}
    row["max_gain"] = max(v for key, v in row.items() if key != "single") - row["single"]
    return row
