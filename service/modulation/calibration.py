"""Calibration: the σ that gives a target top-1 fidelity or accuracy, by root-finding on the exact curve.

``F(σ) = mean_n P(argmax(z_n + ε) = y_n)``, ``y`` the unmodulated argmax (fidelity) or the label (accuracy),
evaluated by :class:`service.modulation.top1curve.Top1Curve` (exact to a per-row bound); the solver brackets
on a stratified subsample, then finishes with Brent on the full set in a few evaluations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from service.modulation.top1curve import Top1Curve

__all__ = ["CalibrationResult", "Top1Curve", "sigma_for_accuracy", "sigma_for_fidelity", "solve_sigma"]


@dataclass(frozen=True)
class CalibrationResult:
    """A solved σ (logit units). ``achieved`` is F(σ) (within ``row_tol`` plus the quadrature error),
    ``evaluations`` counts full-set curve evaluations, ``sample_evaluations`` those on the subsample,
    ``seconds`` the wall time (including building the curve for ``sigma_for_*``)."""

    sigma: float
    target: float
    achieved: float
    metric: str
    rows: int
    classes: int
    evaluations: int
    sample_evaluations: int
    seconds: float


def sigma_for_fidelity(
    logits: Tensor, target: float, *, value_tol: float = 1e-6, row_tol: float = 1e-7
) -> CalibrationResult:
    """σ at which the expected top-1 agreement with the unmodulated argmax over ``logits`` (N, C) equals
    ``target`` within ``value_tol``. ValueError when ``target`` is outside (1/C, F(0+)]."""
    started = time.perf_counter()
    curve = Top1Curve(logits, row_tol=row_tol)
    return solve_sigma(curve, target, "fidelity", value_tol=value_tol, started=started)


def sigma_for_accuracy(
    logits: Tensor, labels: Tensor, target: float, *, value_tol: float = 1e-6, row_tol: float = 1e-7
) -> CalibrationResult:
    """σ at which the expected top-1 accuracy against ``labels`` (N,) equals ``target`` within ``value_tol``.

    Expected accuracy need not be monotone in σ (a misclassified row's label can gain); the root returned
    is the first crossing found by the bracket search from the data's scale.
    """
    started = time.perf_counter()
    curve = Top1Curve(logits, labels, row_tol=row_tol)
    return solve_sigma(curve, target, "accuracy", value_tol=value_tol, started=started)


def solve_sigma(
    curve: Top1Curve,
    target: float,
    metric: str = "fidelity",
    *,
    value_tol: float = 1e-6,
    sample_rows: int = 1024,
    started: float | None = None,
) -> CalibrationResult:
    """Root of ``F(σ) = target`` within ``value_tol``. Brent on an evenly spaced subsample of
    ``sample_rows`` rows gives a guess and a slope; Newton, bracket growth and Illinois steps on the full
    curve finish (typically 2-4 full evaluations). Deterministic. σ = 0 when the target is F(0+) (and for a
    fidelity of exactly 1, which only the unmodulated output gives when top logits tie)."""
    started = time.perf_counter() if started is None else started
    ceiling = _check_target(curve, target, metric, value_tol)
    counts = [0, 0]

    def full(sigma: float) -> float:
        counts[0] += 1
        return curve.mean(sigma) - target

    sigma, gap = 0.0, ceiling - target
    if metric == "fidelity" and gap <= value_tol:
        gap = 1.0 - target  # σ = 0 serves the unmodulated output itself, ties included
    elif gap > value_tol:
        guess, slope = _sample_guess(curve, target, sample_rows, counts)
        sigma, gap = _refine(full, guess, slope, value_tol, f"target {metric} {target:g}")
    return CalibrationResult(
        sigma=sigma,
        target=target,
        achieved=target + gap,
        metric=metric,
        rows=curve.rows,
        classes=curve.classes,
        evaluations=counts[0],
        sample_evaluations=counts[1],
        seconds=time.perf_counter() - started,
    )


def _check_target(curve: Top1Curve, target: float, metric: str, value_tol: float) -> float:
    if isinstance(target, bool) or not isinstance(target, float | int) or not math.isfinite(target):
        raise ValueError(f"target {metric} must be a number in (0, 1], got {target!r}")
    if not 0 < value_tol < 0.01:
        raise ValueError(f"value_tol must be in (0, 0.01), got {value_tol!r}")
    chance = 1.0 / curve.classes
    if not chance < target <= 1:
        raise ValueError(
            f"target {metric} {target:g} is not in (1/C, 1] = ({chance:g}, 1]: noise drives {metric} "
            f"toward chance level 1/C but never to it"
        )
    ceiling = curve.limit_at_zero()
    if target > ceiling + value_tol and not (metric == "fidelity" and target == 1):
        raise ValueError(
            f"target {metric} {target:g} is above {ceiling:g}, the {metric} of the calibration set as "
            "sigma -> 0 (tied top logits count 1/k): noise only lowers it"
        )
    return ceiling


def _sample_guess(curve: Top1Curve, target: float, rows: int, counts: list[int]) -> tuple[float, float]:
    """Root and slope dF/dσ on a subsample: every k-th row in gap-range order (stratified)."""
    from scipy.optimize import brentq  # ~0.2 s to import: only when solving

    sample = curve._every(math.ceil(curve.rows / rows)) if curve.rows > rows else curve

    def f(sigma: float) -> float:
        counts[1] += 1
        return sample.mean(sigma) - target

    median = float(curve.near[:, 0].abs().median())
    lo = hi = median if median > 0 else float(curve.near.abs().mean()) or 1.0
    f_lo = f_hi = f(lo)
    for _ in range(40):  # geometric bracket, factor 4 per step
        if f_lo > 0 >= f_hi:
            root = float(brentq(f, lo, hi, xtol=1e-3 * lo, rtol=1e-4))
            return root, (f(root * 1.01) - f(root * 0.99)) / (0.02 * root)
        if f_hi > 0:
            lo, f_lo, hi = hi, f_hi, hi * 4
            f_hi = f(hi)
        else:
            hi, f_hi, lo = lo, f_lo, lo / 4
            f_lo = f(lo)
    return lo, math.nan  # the subsample never crossed (target at its edge): the full search takes over


def _refine(
    f: Callable[[float], float], guess: float, slope: float, tol: float, what: str
) -> tuple[float, float]:
    """(σ, F(σ) - target) with ``|F(σ) - target| ≤ tol``: Newton from the guess, secant steps (each within
    a factor 4) until the root is bracketed, then Illinois (regula falsi with halving)."""
    a, fa = guess, f(guess)
    if abs(fa) <= tol:
        return a, fa
    b = a - fa / slope if slope < 0 and math.isfinite(slope) else (a * 2 if fa > 0 else a / 2)
    for _ in range(60):
        b = min(max(b, a / 4), a * 4)
        fb = f(b)
        if abs(fb) <= tol:
            return b, fb
        if (fa > 0) != (fb > 0):
            break
        secant = (fb - fa) / (b - a) if b != a else 0.0
        a, fa, b = b, fb, (b - fb / secant if secant < 0 else (b * 4 if fb > 0 else b / 4))
    else:
        raise ValueError(f"no sigma reaches {what}: the curve never crossed it")
    side = 0
    for _ in range(100):
        c = (a * fb - b * fa) / (fb - fa)
        fc = f(c)
        if abs(fc) <= tol or abs(b - a) <= 1e-12 * max(a, b):
            return c, fc
        if (fc > 0) == (fb > 0):
            b, fb, side, fa = c, fc, -1, (fa / 2 if side == -1 else fa)
        else:
            a, fa, side, fb = c, fc, 1, (fb / 2 if side == 1 else fb)
    raise ValueError(f"root-finding for {what} did not converge")
