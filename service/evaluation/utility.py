"""The utility sweep: accuracy (and mIoU for segmentation) and fidelity against σ, sampled and exact.

Sampled: ``repeats`` keyed passes of the serving path's `modulate` per σ; mean and standard deviation over
the repeats. Exact: the theory module's top-1 probability of every scored output (item, or pixel),
averaged (over a uniform subset of pixels when there are too many). The per-output probabilities p_i also
give the standard error of the sampled mean, ``sqrt(mean p_i (1 - p_i) / N) / sqrt(repeats)`` (plus the
subset's own error), which is what "the exact curve matches the sampled one within the sampling error"
is measured against.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from service.evaluation.metrics import IGNORE, mean_iou
from service.evaluation.sampling import Outcome, RowMaker, sweep
from service.modulation import RowSpec
from service.modulation.theory import top1_probability


@dataclass(frozen=True)
class Curve:
    """Exact expectations at each σ over the scored outputs, with two standard errors.

    pass_se: the standard deviation of one sampled pass's mean, ``sqrt(mean p(1-p) / total)``.
    subset_se: when the exact values are averaged over a random subset of the outputs (segmentation), the
    standard error of that subset mean as an estimate of the full-set mean (0 when all were used).
    """

    value: list[float]
    pass_se: list[float]
    subset_se: list[float]

    def tolerance_se(self, i: int, repeats: int) -> float:
        """Standard error of (sampled mean over ``repeats`` passes) - (exact value) at σ index ``i``."""
        return math.sqrt(self.pass_se[i] ** 2 / repeats + self.subset_se[i] ** 2)


def scored_pixels(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, C) logits and (P,) labels of the scored outputs: items, or non-IGNORE pixels of (N, C, H, W)."""
    if logits.dim() == 2:
        return logits, labels
    flat = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    y = labels.reshape(-1)
    keep = y != IGNORE
    return flat[keep], y[keep]


def _curve(p: torch.Tensor, total: int) -> Curve:
    """(S, M) probabilities of M of ``total`` outputs -> the curve and its standard errors."""
    m = p.shape[1]
    bernoulli = (p * (1.0 - p)).mean(1)
    pass_se = (bernoulli / total).sqrt()
    # Finite-population correction: a subset of all outputs has no error.
    subset_se = p.std(1) * math.sqrt((1.0 - m / total) / m) if m < total else torch.zeros_like(pass_se)
    return Curve(p.mean(1).tolist(), pass_se.tolist(), subset_se.tolist())


def exact_curves(
    logits: torch.Tensor, labels: torch.Tensor, sigmas: Sequence[float], *, max_outputs: int | None = None
) -> tuple[Curve, Curve]:
    """(accuracy, fidelity) exact curves over the scored outputs (theory module, Gauss–Hermite).

    With ``max_outputs`` below the number of scored outputs, the average is over that many drawn uniformly
    without replacement (seed 0): the cost is O(outputs · C · σ values), too much for every pixel.
    """
    z, y = scored_pixels(logits, labels)
    total = len(y)
    if max_outputs is not None and total > max_outputs:
        pick = torch.randperm(total, generator=torch.Generator().manual_seed(0))[:max_outputs]
        z, y = z[pick], y[pick]
    grid = list(sigmas)
    accuracy_p = top1_probability(z, y, grid)
    fidelity_p = top1_probability(z, z.argmax(1), grid)
    return _curve(accuracy_p, total), _curve(fidelity_p, total)


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def sampled_outcomes(
    logits: torch.Tensor, labels: torch.Tensor, sigmas: Sequence[float], repeats: int, *, progress: bool
) -> list[list[Outcome]]:
    """``[σ index][repeat]`` outcomes of keyed modulation at each σ."""

    def rows(sigma: float) -> RowMaker:
        return lambda key: RowSpec(sigma=sigma, key=key)

    return sweep(logits, labels, [rows(s) for s in sigmas], repeats, desc="utility sweep", progress=progress)


def utility_table(
    logits: torch.Tensor,
    labels: torch.Tensor,
    sigmas: Sequence[float],
    repeats: int,
    *,
    max_exact: int | None = None,
    progress: bool = False,
) -> list[dict[str, float | int]]:
    """One row per σ: sampled mean/std and exact accuracy and fidelity, the tolerance, and mIoU if 4-D.

    Columns: sigma, accuracy_mean, accuracy_std, accuracy_exact, accuracy_se, fidelity_mean, fidelity_std,
    fidelity_exact, fidelity_se, [miou_mean, miou_std], scored, repeats. ``*_se`` is the standard error of
    (sampled mean - exact) implied by the exact per-output probabilities (see `Curve.tolerance_se`);
    ``max_exact`` caps the outputs the exact curves average over (see `exact_curves`).
    """
    outcomes = sampled_outcomes(logits, labels, sigmas, repeats, progress=progress)
    exact_acc, exact_fid = exact_curves(logits, labels, sigmas, max_outputs=max_exact)
    segmentation = logits.dim() == 4
    rows: list[dict[str, float | int]] = []
    for i, sigma in enumerate(sigmas):
        acc = _stats([o.accuracy for o in outcomes[i]])
        fid = _stats([o.fidelity for o in outcomes[i]])
        row: dict[str, float | int] = {
            "sigma": sigma,
            "accuracy_mean": acc[0],
            "accuracy_std": acc[1],
            "accuracy_exact": exact_acc.value[i],
            "accuracy_se": exact_acc.tolerance_se(i, repeats),
            "fidelity_mean": fid[0],
            "fidelity_std": fid[1],
            "fidelity_exact": exact_fid.value[i],
            "fidelity_se": exact_fid.tolerance_se(i, repeats),
        }
        if segmentation:
            row["miou_mean"], row["miou_std"] = _stats([mean_iou(o.confusion) for o in outcomes[i]])
        row["scored"] = outcomes[i][0].scored
        row["repeats"] = repeats
        rows.append(row)
    return rows
