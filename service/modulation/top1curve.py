"""Top1Curve: the exact top-1 survival curve F(σ) of a set of logits, evaluated fast.

``F(σ) = mean_n P(argmax(z_n + ε) = y_n)``, ``y`` the unmodulated argmax (fidelity) or the label (accuracy).
:class:`Top1Curve` evaluates it fast, with a rigorous per-row error bound (derivation in docs/theory.md):

- the ``near`` closest competitors of each row enter exactly (products of erfc);
- all other gaps are deposited once onto a shared grid of spacing ``h`` with cubic Lagrange weights, so
  ``Σ_j log Φ(g_j/σ + u_k)`` is a float64 GEMM per σ (per block of rows, over that block's columns); the
  interpolation remainder is at most ``π(s)/24 · (h/σ)⁴ · sup|(log Φ)''''|`` per gap, summed per row and
  node by a float32 GEMM;
- rows whose bound exceeds ``row_tol`` are recomputed by the exact path (:func:`theory.top1_probability`).

Every value is thus the Gauss–Hermite quadrature of the exact integral to within ``row_tol`` per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from service.modulation.theory import SQRT2, TERM_CUT, _as_target, gauss_hermite, top1_probability

_CHUNK_ELEMENTS = 1 << 17  # gaps per preparation chunk: the temporaries stay in cache


@dataclass(frozen=True)
class _Block:
    """Sorted rows ``start:stop`` deposited on global grid columns ``col0 .. col0 + width``."""

    start: int
    stop: int
    col0: int
    weights: Tensor  # (n, width) float64: summed Lagrange weights of the rows' gridded gaps
    factors: Tensor  # (n, width) float32: summed remainder factors π(s), for the bound
    far: float  # the smallest gridded gap of these rows


class Top1Curve:
    """``P_n(σ) = P(argmax(z_n + ε) = y_n)`` for logits (N, C) and targets (N,) (None: the unmodulated
    argmax, first index on ties), at any σ ≥ 0 in logit units.

    Building is O(N·C) once. Rows are sorted by their gap range and cut into blocks, each spanning only
    its own grid columns; a σ costs one GEMM per block, (rows, width) by (width, 38), float64. The grid
    has G ≈ (logit range)/``spacing`` + 7 ≤ ``max_grid`` columns; memory is 12 bytes per row and block
    column (70 MB for 10,000 × 1,000 realistic logits). Logits must be finite; they are not copied.
    """

    def __init__(
        self,
        logits: Tensor,
        target: Tensor | None = None,
        *,
        nodes: int = 64,
        near: int = 8,
        spacing: float = 0.025,
        max_grid: int = 2048,
        row_tol: float = 1e-7,
    ) -> None:
        if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() != 2:
            raise ValueError("logits must be a floating-point tensor of shape (N, C)")
        if logits.shape[0] < 1 or logits.shape[1] < 2:
            raise ValueError(f"logits need at least 1 row and 2 classes, got shape {tuple(logits.shape)}")
        if not (spacing > 0 and max_grid >= 16 and near >= 1 and row_tol > 0):
            raise ValueError("spacing and row_tol must be > 0, max_grid >= 16 and near >= 1")
        z = logits.detach().cpu()
        self.logits = z if z.dtype in (torch.float32, torch.float64) else z.float()
        best, argmax = self.logits.max(1)
        least = self.logits.amin(1)
        if not bool(torch.isfinite(best).all() and torch.isfinite(least).all()):
            raise ValueError("logits must be finite (no NaN or inf)")
        self.target = argmax if target is None else _as_target(target, self.logits)
        top = (best if target is None else self.logits.gather(1, self.target[:, None])[:, 0]).double()
        self.nodes, self.row_tol = nodes, row_tol
        self._u, self._w = gauss_hermite(nodes)
        self._build(
            top, top - best.double(), top - least.double(), min(near, z.shape[1] - 1), spacing, max_grid
        )

    @property
    def rows(self) -> int:
        return int(self.near.shape[0])

    @property
    def classes(self) -> int:
        return int(self.logits.shape[1])

    def limit_at_zero(self) -> float:
        """F(0+), the supremum of F: as σ → 0 a row whose target ties k-1 others at the top scores 1/k."""
        return float(torch.where(self.near[:, 0] >= 0, 1.0 / (1.0 + self.ties), 0.0).mean())

    def probabilities(self, sigma: float, *, fallback: bool = True) -> Tensor:
        """``P_n(σ)`` (N,) float64 in row order, each within ``row_tol`` of the quadrature of the exact
        integral: rows whose fast-path bound exceeds ``row_tol`` are recomputed by the exact path
        (``fallback=False``: the fast values as they are, within :meth:`error_bound`)."""
        out = torch.empty(self.rows, dtype=torch.float64)
        out[self.order] = self._values(sigma, fallback)
        return out

    def mean(self, sigma: float) -> float:
        """``F(σ)``, the mean of :meth:`probabilities` (with the exact fallback)."""
        return float(self._values(sigma, True).mean())

    def expected(self, sigmas: Tensor | list[float] | float) -> Tensor:
        """``F(σ)`` for each σ: (S,) float64."""
        values = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1).tolist()
        return torch.tensor([self.mean(s) for s in values], dtype=torch.float64)

    def error_bound(self, sigma: float) -> Tensor:
        """Rigorous bound (N,) on ``|P_fast - P_quadrature|`` per row at σ > 0, before any fallback."""
        out = torch.empty(self.rows, dtype=torch.float64)
        out[self.order] = self._bound(sigma, self._fast(sigma)[1])
        return out

    def _build(self, top: Tensor, low: Tensor, high: Tensor, near: int, spacing: float, cap: int) -> None:
        """``low``/``high``: each row's smallest/largest gap ``z_y - z_j`` (the target's own 0 included)."""
        lo, hi = float(low.min()), float(high.max())
        self.h = max(spacing, (hi - lo) / (cap - 8))
        self.grid = lo + (torch.arange(math.ceil((hi - lo) / self.h) + 7, dtype=torch.float64) - 2) * self.h
        band = torch.floor((low - lo) / (16 * self.h))  # similar rows share columns: narrow blocks
        self.order = torch.argsort(band * (hi - lo + 1.0) + (high - lo), stable=True)
        self.near = torch.empty(self.order.numel(), near, dtype=torch.float64)
        self.ties = torch.zeros(self.order.numel(), dtype=torch.float64)
        step = max(64, _CHUNK_ELEMENTS // self.classes)
        self.blocks = [
            self._block(a, self.order[a : a + step], top, low, high, lo)
            for a in range(0, self.order.numel(), step)
        ]

    def _block(self, a: int, rows: Tensor, top: Tensor, low: Tensor, high: Tensor, lo: float) -> _Block:
        """Exact near set, ties and the cubic deposit of one block of (sorted) rows."""
        col0 = math.floor((float(low[rows].min()) - lo) / self.h)
        width = math.ceil((float(high[rows].max()) - lo) / self.h) + 7 - col0
        yc, m = self.target[rows, None], self.near.shape[1]
        g = torch.sub(top[rows, None], self.logits[rows]).scatter_(1, yc, math.inf)
        values, index = torch.topk(g, m + 1, dim=1, largest=False)  # m < C: the target's inf is last
        b = a + rows.numel()
        self.near[a:b] = values[:, :m]
        self.ties[a:b] = (values[:, :m] == 0).sum(1).double()
        for r in (values[:, m - 1] == 0).nonzero().flatten().tolist():  # more ties than the near set holds
            self.ties[a + r] = float((g[r] == 0).sum())
        t = g.mul_(1.0 / self.h).add_(2.0 - lo / self.h - col0)  # local grid positions, ≥ 2
        t.scatter_(1, yc, width + 2.5).scatter_(1, index[:, :m], width + 2.5)  # into 5 spare columns
        weights = torch.zeros(rows.numel(), width + 5, dtype=torch.float64)
        factors = torch.zeros(rows.numel(), width + 5, dtype=torch.float32)
        _deposit(t, weights, factors)
        return _Block(a, b, col0, weights[:, :width], factors[:, :width], float(values[:, m].min()))

    def _every(self, step: int) -> Top1Curve:
        """Every ``step``-th row in sorted order (a sample stratified by gap range), sharing the grid."""
        part = object.__new__(Top1Curve)
        part.__dict__.update(self.__dict__)
        part.near, part.ties, part.order = self.near[::step], self.ties[::step], self.order[::step]
        part.blocks, start = [], 0
        for blk in self.blocks:
            first = (-blk.start) % step
            weights, factors = blk.weights[first::step], blk.factors[first::step]
            if weights.shape[0]:
                stop = start + weights.shape[0]
                part.blocks.append(_Block(start, stop, blk.col0, weights, factors, blk.far))
                start = stop
        return part

    def _values(self, sigma: float, fallback: bool) -> Tensor:
        """P in sorted row order (see :meth:`probabilities`)."""
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
        if sigma == 0:
            return (self.near[:, 0] > 0).double()
        p, f = self._fast(sigma)
        redo = (self._bound(sigma, f) > self.row_tol).nonzero().flatten() if fallback else p[:0].long()
        if redo.numel():
            rows = self.order[redo]
            p[redo] = top1_probability(self.logits[rows], self.target[rows], [sigma], nodes=self.nodes)[0]
        return p

    def _fast(self, sigma: float) -> tuple[Tensor, Tensor]:
        """(P (N,), integrand f (N, K)) in sorted row order, by the block GEMMs and the exact near set.

        Columns where ``x = g/σ + u_min ≥ TERM_CUT`` are dropped, and so are blocks whose smallest
        gridded gap is that far: each such term is above -5.2e-17 (relative error ≤ C·5.2e-17).
        """
        u = self._u
        x = self.grid[:, None] / sigma + u  # (G, K); nodes ascend, so column 0 holds the smallest
        cut = int((x[:, 0] < TERM_CUT).sum())
        psi = torch.special.log_ndtr(x[:cut])
        log_f = torch.zeros(self.rows, u.numel(), dtype=torch.float64)
        for blk, cols in self._live(sigma, cut):
            log_f[blk.start : blk.stop] = blk.weights[:, :cols] @ psi[blk.col0 : blk.col0 + cols]
        f = torch.exp(log_f)
        arg = torch.add(u / -SQRT2, self.near[:, :, None], alpha=-1.0 / (SQRT2 * sigma))  # Φ = erfc(arg)/2
        f *= torch.special.erfc(arg).prod(1).mul_(0.5 ** self.near.shape[1])
        return f @ self._w, f

    def _bound(self, sigma: float, f: Tensor) -> Tensor:
        """Per row: Σ_k w_k f_k (exp(E_k) - 1), E_k the summed Lagrange remainders at node k."""
        x = self.grid[:, None] / sigma + self._u
        span = min(int((x[:, 0] < TERM_CUT).sum()) + 1, x.shape[0])  # stencils from column `cut` too
        env = _psi4_envelope(x[:span] - self.h / sigma).float()  # sup over the stencil [i-1, i+2]
        excess = torch.zeros_like(f)
        for blk, cols in self._live(sigma, span):
            excess[blk.start : blk.stop] = (blk.factors[:, :cols] @ env[blk.col0 : blk.col0 + cols]).double()
        excess *= 1.001 * (self.h / sigma) ** 4 / 24  # 1.001: the float32 sums of positive terms
        return (f * torch.expm1(excess)) @ self._w + 1e-15

    def _live(self, sigma: float, columns: int) -> list[tuple[_Block, int]]:
        reach = sigma * (TERM_CUT - float(self._u[0]))
        live = [
            (blk, min(blk.weights.shape[1], columns - blk.col0)) for blk in self.blocks if blk.far < reach
        ]
        return [(blk, cols) for blk, cols in live if cols > 0]


def _deposit(t: Tensor, weights: Tensor, factors: Tensor) -> None:
    """Cubic Lagrange deposit of grid positions ``t`` (n, C) onto rows of ``weights``/``factors``.

    A gap at ``t = i + s`` (0 ≤ s < 1) adds ℓ_k(s) to columns i-1..i+2 of ``weights`` and the remainder's
    polynomial factor ``π(s) = |(s+1)s(s-1)(s-2)|`` (≤ 9/16) to column i of ``factors``.
    """
    i0 = t.floor()
    s = t.sub_(i0)
    index = i0.long().add_(torch.arange(t.shape[0])[:, None] * weights.shape[1] - 1).view(-1)
    flat = weights.view(-1)
    a = s * (s - 1.0)
    b = a - 2.0
    factors.view(-1)[1:].index_add_(0, index, (a * b).view(-1).float())
    flat.index_add_(0, index, torch.rsub(s, 2.0).mul_(a).view(-1), alpha=1 / 6)
    flat[1:].index_add_(0, index, (s - 1.0).mul_(b).view(-1), alpha=0.5)
    flat[3:].index_add_(0, index, (s + 1.0).mul_(a).view(-1), alpha=1 / 6)
    flat[2:].index_add_(0, index, s.mul_(b).view(-1), alpha=-0.5)


@lru_cache(maxsize=1)
def _psi4_table() -> tuple[float, float, Tensor]:
    """``sup_{y ≥ x} |ψ''''(y)|``, ψ = log Φ, tabulated with step 5e-4 on [-60, 60] (×1.01 margin)."""
    x = torch.linspace(-60.0, 60.0, 240_001, dtype=torch.float64)
    lam = torch.exp(-0.5 * x * x - 0.5 * math.log(2 * math.pi) - torch.special.log_ndtr(x))
    t = x + lam  # ψ' = λ, ψ'' = -λt, ψ''' = λ(t² + λt - 1)
    d4 = -lam * t**3 - 4 * lam**2 * t**2 + 3 * lam * t + lam**2 - lam**3 * t
    suffix = torch.flip(torch.cummax(torch.flip(d4.abs(), [0]), 0).values, [0])
    return -60.0, 120.0 / 240_000, suffix * 1.01 + 1e-300


def _psi4_envelope(x: Tensor) -> Tensor:
    """An upper bound of ``|ψ''''|`` on ``[x, ∞)``, elementwise."""
    start, step, table = _psi4_table()
    return table[((x - start) / step).floor().clamp(0, table.numel() - 1).long()]
