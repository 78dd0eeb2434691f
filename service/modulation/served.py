"""Served fidelity on fixed draws: the σ at which a deployment's own keyed noise meets a fidelity target.

`service.modulation.calibration` solves σ for the expectation over independent draws per row. A deployment
whose noise is keyed semantically (`service.modulation.semantic`: a classifier's noise is a mixture of M
draws shared by every input of a tier, weighted by the input's features) serves one fixed realisation per
server secret and tier, and unrelated inputs' draws correlate (mean 0.11 on the fine-tuned sentiment
preset), so what it serves can sit far from that expectation (served fidelity 0.55-0.82 over 20 secrets for
a target of 0.70: docs/results.md). Here σ is solved on the realisation itself.

With fixed unit draws n_i (C,), a row serves ``argmax(l_i + σ n_i)``. Its clean top-1 y stays on top while
``σ (n_j - n_y) < l_y - l_j`` for every j, so row i is served faithfully exactly for σ below

    s_i = min over j with n_j > n_y of (l_y - l_j) / (n_j - n_y)     (inf when no such j)

and never again above it (each competitor's lead over y grows linearly in σ). Served fidelity
``F(σ) = mean_i [σ < s_i]`` is therefore a non-increasing step function with one step per row, and the
solver's rule is exact: the smallest σ whose served fidelity is at most the target, taken at the middle of
that step (any σ on the step serves the same fidelity on these rows; the middle keeps float32 rounding of
the served logits away from both ends). Pure torch; no model, secret or web layer here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class ServedSolution:
    """A σ solved on fixed draws: ``achieved`` is the served fidelity on the ``rows`` rows at ``sigma``
    (the largest step value at most ``target``); ``step`` is the interval of σ serving it."""

    sigma: float
    target: float
    achieved: float
    rows: int
    step: tuple[float, float]


def flip_sigmas(logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """(N,) float64: the σ above which each row's served top-1 leaves its clean top-1 (inf: never).

    Args:
        logits: (N, C) clean logits; the clean top-1 is ``argmax`` (first index on ties), as served.
        noise: (N, C) the rows' unit-σ noise as served (served logits = logits + σ noise).
    """
    if logits.dim() != 2 or logits.shape != noise.shape or logits.shape[1] < 2:
        shapes = f"{tuple(logits.shape)} and {tuple(noise.shape)}"
        raise ValueError(f"logits and noise must both be (N, C >= 2), got {shapes}")
    lg, nz = logits.double(), noise.double()
    top = lg.argmax(dim=1, keepdim=True)
    gap = lg.gather(1, top) - lg  # (N, C) >= 0: the clean lead of y over each class
    rise = nz - nz.gather(1, top)  # (N, C): how fast each class gains on y per unit σ
    ratio = torch.where(rise > 0, gap / rise.clamp_min(1e-300), torch.full_like(gap, math.inf))
    return ratio.amin(dim=1)


def served_fidelity(flips: torch.Tensor, sigma: float) -> float:
    """The served fidelity at ``sigma``: the share of rows whose flip point is above it."""
    return float((flips > sigma).double().mean())


def solve_served_sigma(flips: torch.Tensor, target: float) -> ServedSolution:
    """The smallest σ whose served fidelity on these rows is at most ``target``, mid-step (see above).

    ``flips``: (N,) from :func:`flip_sigmas`. ValueError when ``target`` is not in (0, 1) or when more than
    ``target`` of the rows never flip (no σ brings the served fidelity down to the target).
    """
    if isinstance(target, bool) or not isinstance(target, float | int) or not 0.0 < target < 1.0:
        raise ValueError(f"target fidelity must be a number in (0, 1), got {target!r}")
    rows = flips.numel()
    if rows == 0:
        raise ValueError("no calibration rows to solve sigma on")
    ordered = flips.double().sort(descending=True).values  # F(σ) = #{s_i > σ} / N
    keep = math.floor(target * rows + 1e-9)  # most rows that may stay faithful: keep / N <= target
    low = float(ordered[keep])  # at σ = low, exactly the `keep` rows above it stay faithful
    if not math.isfinite(low):
        never = int(torch.isinf(ordered).sum())
        raise ValueError(
            f"{never} of {rows} calibration rows are served faithfully at every sigma (their draw favours "
            f"their top class): more than the target fidelity {target:g} allows"
        )
    high = float(ordered[keep - 1]) if keep > 0 else math.inf
    sigma = (low + high) / 2 if math.isfinite(high) else max(2 * low, low + 1.0)
    return ServedSolution(sigma, float(target), served_fidelity(flips, sigma), rows, (low, high))
