"""Exact theory of utility and focus modulation (paper AIM, Theorems 1-3, and what they leave out).

Notation: ``z`` logits of one output, ``σ`` the utility noise level (``z' = z + ε``, ``ε ~ N(0, σ²)`` i.i.d.),
``σ_f`` the focus strength (``z'_t = z_t ± |ε_t|``). Logits and σ are in logit units; probabilities are
float64 tensors. Every function validates its arguments and raises ``ValueError`` naming the bad one.

- :func:`theorem1_product` / :func:`theorem2_derivative`: the paper's product formula for "the whole order
  survives" and its σ-derivative. The product assumes independent pairwise events; they are not (adjacent
  differences share a noise term), so it overestimates: :func:`order_preservation_exact` is the truth.
- :func:`top1_probability`: the exact probability that a given class wins under noise, by Gauss–Hermite
  quadrature of a one-dimensional integral; :func:`expected_accuracy` / :func:`expected_fidelity` average it.
- :func:`focus_keep_probability` (Theorem 3), :func:`focus_flip_probability`, :func:`focus_top1_probability`.

See docs/theory.md for derivations, measured errors and where the paper departs from the truth.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

SQRT2 = math.sqrt(2.0)
TERM_CUT = 8.3
"""log Φ(x) ≥ -5.2e-17 for x ≥ TERM_CUT: such competitor terms are dropped (relative error ≤ C·5.2e-17)."""


def gauss_hermite(nodes: int = 64, min_weight: float = 1e-14) -> tuple[Tensor, Tensor]:
    """Nodes ``u`` (K,) and weights ``w`` (K,) with ``Σ w_k f(u_k) ≈ E f(U)``, ``U ~ N(0, 1)``, float64.

    Nodes whose weight is below ``min_weight`` are dropped (64 nodes keep 38; dropped mass 6e-15).
    """
    u, w = _gauss_hermite(nodes, min_weight)
    return torch.from_numpy(u.copy()), torch.from_numpy(w.copy())


@lru_cache(maxsize=8)
def _gauss_hermite(nodes: int, min_weight: float) -> tuple[np.ndarray, np.ndarray]:
    if nodes < 2:
        raise ValueError(f"nodes must be >= 2, got {nodes}")
    x, w = np.polynomial.hermite.hermgauss(nodes)
    u, w = x * SQRT2, w / math.sqrt(math.pi)
    keep = w >= min_weight
    return u[keep], w[keep]


def theorem1_product(logits: Tensor, sigma: float | Tensor) -> Tensor:
    """The paper's Theorem 1: ``Π_i Φ(d_i / (√2 σ))`` over the sorted gaps ``d_i = z_(i) - z_(i+1)``.

    ``logits`` (..., C); ``sigma`` a float or a tensor broadcastable to the batch shape (...).
    Returns (...) float64. σ = 0 gives the σ → 0 limit (1 per distinct gap, 1/2 per tie).
    This is NOT the probability that the order survives (see :func:`order_preservation_exact`).
    """
    x = _gap_ratios(logits, sigma)
    product: Tensor = torch.special.log_ndtr(x).sum(-1).exp()
    return product


def theorem2_derivative(logits: Tensor, sigma: float | Tensor) -> Tensor:
    """The paper's Theorem 2, d/dσ of :func:`theorem1_product` (per unit of σ), shape as Theorem 1.

    ``Σ_i -d_i/(√2σ²) φ(d_i/(√2σ)) Π_{j≠i} Φ(d_j/(√2σ))``, evaluated stably as ``P Σ_i -(x_i/σ) φ/Φ(x_i)``.
    At σ = 0 it is the limit 0.
    """
    x = _gap_ratios(logits, sigma)
    s = _as_sigma(sigma).unsqueeze(-1)
    log_p = torch.special.log_ndtr(x)
    mills = torch.exp(-0.5 * x.square() - 0.5 * math.log(2 * math.pi) - log_p)
    terms = torch.where(torch.isfinite(x) & (s > 0), -x / s * mills, torch.zeros_like(x))
    derivative: Tensor = log_p.sum(-1).exp() * terms.sum(-1)
    return derivative


def order_preservation_exact(logits: Tensor, sigma: float, *, points_per_sigma: int = 64) -> Tensor:
    """Exact ``P(the whole descending order of z survives z + ε)``: logits (C,) -> () or (N, C) -> (N,).

    Equals the Gaussian orthant ``P(D_i < d_i ∀i)``, ``D ~ N(0, σ² T)``, T tridiagonal (2, -1), computed
    by the chain recursion ``H_C(t) = Φ(t - w_C)``, ``H_i(t) = ∫_{-∞}^t φ(s - w_i) H_{i+1}(s) ds`` in
    standardised units ``w = (z_sorted - z_max)/σ``: cumulative Simpson with ``points_per_sigma`` points
    per σ on ``[min w - 9, 9]``; error O(step⁴), 3e-10 at the default for the 5-logit example of
    docs/theory.md. Any C; the grid has ``(18 + spread/σ)·points_per_sigma`` points (at most 2e6, and
    N·C·points ≤ 4e8). σ = 0 gives the limit ``Π 1/k!`` over groups of k tied logits.
    """
    z = _as_logits(logits, min_dims=1)
    single = z.dim() == 1
    rows = z.reshape(1, -1) if single else z
    if rows.dim() != 2:
        raise ValueError(f"logits must have shape (C,) or (N, C), got {tuple(z.shape)}")
    s = float(_as_sigma(sigma))
    if points_per_sigma < 8:
        raise ValueError(f"points_per_sigma must be >= 8, got {points_per_sigma}")
    ordered = rows.sort(dim=1, descending=True).values
    result = _ties_limit(ordered) if s == 0 else _chain_probability(ordered, s, points_per_sigma)
    return result[0] if single else result


def _chain_probability(ordered: Tensor, sigma: float, points_per_sigma: int) -> Tensor:
    from scipy.integrate import cumulative_simpson
    from scipy.special import log_ndtr

    w = ((ordered - ordered[:, :1]) / sigma).numpy()
    length = math.ceil((18.0 - float(w.min())) * points_per_sigma) + 1
    if length * w.size > 4e8 or length > 2_000_000:
        raise ValueError(
            f"sigma {sigma:g} is too small for the logit spread ({-float(w.min()) * sigma:g}): "
            f"the exact grid would need {length} points per class"
        )
    t = np.linspace(float(w.min()) - 9.0, 9.0, length)
    dt = float(t[1] - t[0])
    h = np.exp(log_ndtr(t[None, :] - w[:, -1:]))
    log_scale = np.zeros(w.shape[0])
    for i in range(w.shape[1] - 2, -1, -1):
        density = np.exp(-0.5 * (t[None, :] - w[:, i : i + 1]) ** 2) / math.sqrt(2 * math.pi)
        h = cumulative_simpson(density * h, dx=dt, initial=0.0)
        total = h[:, -1]
        safe = np.where(total > 0, total, 1.0)
        h = h / safe[:, None]
        log_scale += np.where(total > 0, np.log(safe), -np.inf)
    return torch.from_numpy(np.exp(log_scale))


def _ties_limit(ordered: Tensor) -> Tensor:
    out = torch.ones(ordered.shape[0], dtype=torch.float64)
    for r in range(ordered.shape[0]):
        for count in torch.unique_consecutive(ordered[r], return_counts=True)[1].tolist():
            out[r] /= math.factorial(int(count))
    return out


def top1_probability(
    logits: Tensor, target: Tensor, sigmas: Tensor | list[float] | float, *, nodes: int = 64
) -> Tensor:
    """Exact ``P(argmax(z_n + ε) = y_n)`` for every row n and σ: logits (N, C), target (N,) -> (S, N).

    ``P = ∫ φ(u) Π_{j≠y} Φ((z_y - z_j)/σ + u) du``: Gauss–Hermite quadrature (``nodes``, weights < 1e-14
    dropped), summed in log space (log_ndtr), float64, chunked to ~4M gaps at a time. Per node only the
    competitors whose term is below log Φ(8.3) = -5.2e-17 are evaluated (sorted gaps): a cut that changes
    nothing at float64 precision. σ = 0 gives the indicator that the target is the strict argmax.
    Quadrature error (64 nodes, measured): per row ≤ 6e-8 at σ ≤ 1 on realistic 1000-class logits, up to
    3e-5 at σ = 3-10 where 999 competitors bunch (mean over rows ≤ 1e-6); worst case all C-1 competitors
    tied: 6e-5 at C = 1000. ``nodes=128`` cuts these ~100×. Cost ~ N·C·K·13 ns: the reference path;
    calibration.Top1Curve evaluates large sets fast.
    """
    z = _as_logits(logits, min_dims=2)
    y = _as_target(target, z)
    s = _as_sigmas(sigmas)
    u, w = gauss_hermite(nodes)
    n, c = z.shape
    out = torch.empty(s.numel(), n, dtype=torch.float64)
    step = max(1, (1 << 22) // max(c, 1))
    for a in range(0, n, step):
        gaps = competitor_gaps(z[a : a + step], y[a : a + step]).sort(dim=1).values
        for i, sigma in enumerate(s.tolist()):
            out[i, a : a + step] = _top1_sorted(gaps, sigma, u, w)
    return out


def competitor_gaps(logits: Tensor, target: Tensor) -> Tensor:
    """``z_y - z_j`` for the C-1 classes j ≠ y of each row: (N, C), (N,) -> (N, C-1), in logits' dtype."""
    g = logits.gather(1, target[:, None]) - logits
    keep = torch.ones_like(g, dtype=torch.bool).scatter_(1, target[:, None], False)
    return g[keep].view(g.shape[0], g.shape[1] - 1)


def _top1_sorted(gaps: Tensor, sigma: float, u: Tensor, w: Tensor) -> Tensor:
    """Rows of ascending competitor gaps (n, C-1) -> P(target wins) (n,) at one σ."""
    n, m = gaps.shape
    if m == 0:
        return torch.ones(n, dtype=torch.float64)
    if sigma == 0:
        return (gaps[:, 0] > 0).double()
    needed = torch.searchsorted(gaps, (sigma * (TERM_CUT - u)).expand(n, -1).contiguous()).amax(0)
    log_f = torch.zeros(n, u.numel(), dtype=torch.float64)
    for k, cols in enumerate(needed.tolist()):
        if cols:
            log_f[:, k] = torch.special.log_ndtr(gaps[:, :cols] / sigma + u[k]).sum(1)
    return log_f.exp() @ w


def expected_accuracy(
    logits: Tensor, labels: Tensor, sigmas: Tensor | list[float] | float, *, nodes: int = 64
) -> Tensor:
    """Exact expected top-1 accuracy under utility noise: logits (N, C), labels (N,) -> (S,) mean over N."""
    return top1_probability(logits, labels, sigmas, nodes=nodes).mean(1)


def expected_fidelity(logits: Tensor, sigmas: Tensor | list[float] | float, *, nodes: int = 64) -> Tensor:
    """Exact expected agreement of the modulated top-1 with the unmodulated argmax: (N, C) -> (S,)."""
    z = _as_logits(logits, min_dims=2)
    return top1_probability(z, z.argmax(1), sigmas, nodes=nodes).mean(1)


def focus_keep_probability(d: Tensor | float, sigma_f: Tensor | float) -> Tensor:
    """Theorem 3: ``P(z_t + |ε| ≤ z_r) = 2Φ(d/σ_f) - 1`` for a boosted target t below a reference r.

    ``d = z_r - z_t ≥ 0`` (logit units), ``σ_f ≥ 0``; broadcast, float64. It is the probability that the boost
    does NOT lift the target above the reference (the pair keeps its order); σ_f = 0 gives 1.
    By symmetry it is also ``P(z_t - |ε| ≥ z_r)`` for a suppressed target t above r by d.
    """
    dd, s = _focus_args(d, sigma_f)
    ratio = torch.where(s > 0, dd / (s * SQRT2), torch.full_like(dd, math.inf))
    keep: Tensor = torch.special.erf(ratio)
    return keep


def focus_flip_probability(d: Tensor | float, sigma_f: Tensor | float) -> Tensor:
    """``1 - 2Φ(d/σ_f) + 1 = 2Φ(-d/σ_f)``: the probability that the boost lifts t strictly above r."""
    dd, s = _focus_args(d, sigma_f)
    ratio = torch.where(s > 0, dd / (s * SQRT2), torch.full_like(dd, math.inf))
    flip: Tensor = torch.special.erfc(ratio)
    return flip


def focus_top1_probability(
    logits: Tensor, target: Tensor, sigma_f: Tensor | list[float] | float, *, sign: int = 1
) -> Tensor:
    """P(argmax = target) when only the target is focused (no utility noise): (N, C), (N,) -> (S, N).

    Boost (sign +1): 1 if the target already wins (ties included), else ``2Φ(-m/σ_f)`` with m the gap to
    the best other class (Theorem 3's flip). Suppress (sign -1): ``2Φ(m'/σ_f) - 1`` with m' its lead, 0 if
    it does not lead. Averaged over rows labelled c it is the recall of c under focus on c.
    """
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 (boost) or -1 (suppress), got {sign}")
    z = _as_logits(logits, min_dims=2)
    y = _as_target(target, z)
    s = _as_sigmas(sigma_f)[:, None]
    gaps = competitor_gaps(z, y)
    lead = gaps.amin(1) if gaps.shape[1] else torch.full((z.shape[0],), math.inf, dtype=torch.float64)
    if sign == 1:
        behind = (-lead).clamp(min=0.0)
        p = focus_flip_probability(behind, s)
        return torch.where(lead >= 0, torch.ones_like(p), p)
    return torch.where(lead > 0, focus_keep_probability(lead.clamp(min=0.0), s), torch.zeros_like(s))


def _focus_args(d: Tensor | float, sigma_f: Tensor | float) -> tuple[Tensor, Tensor]:
    dd = torch.as_tensor(d, dtype=torch.float64)
    if not bool(torch.all(dd >= 0)):
        raise ValueError("d (reference minus target logit) must be >= 0")
    s = _as_sigma(sigma_f, name="sigma_f")
    both = dd + s  # broadcasting check: raises on incompatible shapes
    return dd.expand_as(both), s.expand_as(both)


def _gap_ratios(logits: Tensor, sigma: float | Tensor) -> Tensor:
    """Sorted gaps over √2σ, (..., C-1), with d/0 = +inf and 0/0 = 0 (the σ → 0 limits)."""
    z = _as_logits(logits, min_dims=1)
    d = -z.sort(dim=-1, descending=True).values.diff(dim=-1)
    s = _as_sigma(sigma).unsqueeze(-1)
    ratio = d / (SQRT2 * s)
    return torch.where(d == 0, torch.zeros_like(ratio), ratio)


def _as_logits(logits: Tensor, *, min_dims: int) -> Tensor:
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise ValueError("logits must be a floating-point torch.Tensor")
    if logits.dim() < min_dims or logits.shape[-1] < 1 or logits.numel() == 0:
        raise ValueError(f"logits must have at least {min_dims} dims and classes, got {tuple(logits.shape)}")
    z = logits.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(z).all()):
        raise ValueError("logits must be finite (no NaN or inf)")
    return z


def _as_target(target: Tensor, z: Tensor) -> Tensor:
    y = torch.as_tensor(target).detach().cpu()
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.shape != (z.shape[0],):
        raise ValueError(
            f"target/labels must be integer of shape ({z.shape[0]},), got {y.dtype} {tuple(y.shape)}"
        )
    y = y.long()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
        raise ValueError(f"target/labels must lie in [0, {z.shape[1]}), got [{int(y.min())}, {int(y.max())}]")
    return y


def _as_sigma(sigma: float | Tensor, *, name: str = "sigma") -> Tensor:
    s = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu()
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0, got {s.tolist()}")
    return s


def _as_sigmas(sigmas: Tensor | list[float] | float) -> Tensor:
    s = _as_sigma(torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1))
    if s.numel() == 0:
        raise ValueError("sigmas must not be empty")
    return s
