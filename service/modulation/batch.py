"""Per-request settings turned into one row of a batch tensor (vLLM ``v1/sample`` style).

`RowSpec` is checked once when it is built (the edge of the core); `ModulationBatch.build` makes every
host-side decision once per batch (which rows need utility noise, which need focus) so the hot path runs a
fixed number of vectorised ops with no Python loop over rows and no device-to-host synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from service.modulation.keys import RowKey, as_int32
from service.modulation.semantic import mixture_keys

BOOST = 1
SUPPRESS = -1


@dataclass(frozen=True, slots=True)
class RowSpec:
    """One output row's modulation.

    sigma: utility noise standard deviation, in logit units (0 = the unmodulated model).
    key: the row's noise key (see `service.modulation.keys.derive_row_key`).
    focus_ids: class (or token) indices whose logits get focus noise; empty = no focus.
    focus_strength: σ_f of the folded-normal focus noise, in logit units.
    focus_sign: BOOST (+1) adds |ε|, SUPPRESS (-1) subtracts it.
    """

    sigma: float
    key: RowKey
    focus_ids: tuple[int, ...] = ()
    focus_strength: float = 0.0
    focus_sign: int = BOOST

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma >= 0.0):
            raise ValueError(f"sigma must be a finite number >= 0, got {self.sigma!r}")
        if not (math.isfinite(self.focus_strength) and self.focus_strength >= 0.0):
            raise ValueError(f"focus_strength must be a finite number >= 0, got {self.focus_strength!r}")
        if self.focus_sign not in (BOOST, SUPPRESS):
            raise ValueError(f"focus_sign must be +1 (boost) or -1 (suppress), got {self.focus_sign!r}")
        if len(self.key) != 2 or not all(0 <= w < 1 << 32 for w in self.key):
            raise ValueError("key must be two unsigned 32-bit words")
        if any(i < 0 for i in self.focus_ids) or len(set(self.focus_ids)) != len(self.focus_ids):
            raise ValueError(f"focus_ids must be distinct and >= 0, got {self.focus_ids!r}")

    @property
    def has_focus(self) -> bool:
        return bool(self.focus_ids) and self.focus_strength > 0.0


@dataclass(frozen=True, slots=True)
class ModulationBatch:
    """Tensors for one batch of B rows, all on one device.

    keys: (B, M, 2) int32 noise component keys: element n of a row draws from component n mod M, or with
        ``weights`` the noise is the weighted sum of the M components' draws (M = 1 without semantic codes:
        the row key itself; see `service.modulation.semantic`).
    utility_rows: (R,) int64 rows with sigma > 0, or None when no row has utility noise.
    utility_sigma: (R,) float32 their sigmas; ``utility_all`` is True when R == B (no index ops needed).
    focus_rows: (F,) int64 rows with focus, or None.
    focus_ids: (F, K) int64 target classes, padded with 0.
    focus_scale: (F, K) float32 signed σ_f per target (0 for padding).
    weights: (B, M) float32 unit-norm weights of the M components (`semantic.feature_weights`), or None for
        equal shares (one component per element).
    """

    size: int
    keys: torch.Tensor
    utility_rows: torch.Tensor | None
    utility_sigma: torch.Tensor | None
    utility_all: bool
    focus_rows: torch.Tensor | None
    focus_ids: torch.Tensor | None
    focus_scale: torch.Tensor | None
    weights: torch.Tensor | None = None

    @classmethod
    def build(
        cls,
        rows: Sequence[RowSpec],
        num_classes: int,
        device: torch.device | str = "cpu",
        codes: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> ModulationBatch:
        """Batch tensors for ``rows``; raises ValueError when a focus id is not below ``num_classes``.

        ``codes``: (B, L) int32 semantic bucket codes of the rows' inputs (`semantic.bucket_codes`), or None
        to key each row's noise by its row key alone. ``weights``: (B, L) unit-norm component weights
        (`semantic.feature_weights`, with ``codes = semantic.component_codes``); None = equal shares.
        """
        for spec in rows:
            bad = [i for i in spec.focus_ids if i >= num_classes]
            if bad:
                raise ValueError(f"focus_ids {bad} out of range for {num_classes} classes")
        keys = torch.tensor([[as_int32(w) for w in r.key] for r in rows], dtype=torch.int32).reshape(-1, 2)
        keys = keys.to(device)
        if codes is not None:
            if codes.shape[0] != len(rows):
                raise ValueError(f"codes has {codes.shape[0]} rows for a batch of {len(rows)}")
            keys = mixture_keys(keys, codes.to(device=device, dtype=torch.int32))
        else:
            keys = keys[:, None, :]
        if weights is not None and (codes is None or weights.shape != codes.shape):
            raise ValueError("weights need codes of the same (B, L) shape")
        util = [i for i, r in enumerate(rows) if r.sigma > 0.0]
        focus = [i for i, r in enumerate(rows) if r.has_focus]
        u_rows = u_sigma = f_rows = f_ids = f_scale = None
        if util:
            u_rows = torch.tensor(util, dtype=torch.int64, device=device)
            u_sigma = torch.tensor([rows[i].sigma for i in util], dtype=torch.float32, device=device)
        if focus:
            width = max(len(rows[i].focus_ids) for i in focus)
            ids = [list(rows[i].focus_ids) + [0] * (width - len(rows[i].focus_ids)) for i in focus]
            scale = [
                [rows[i].focus_sign * rows[i].focus_strength] * len(rows[i].focus_ids)
                + [0.0] * (width - len(rows[i].focus_ids))
                for i in focus
            ]
            f_rows = torch.tensor(focus, dtype=torch.int64, device=device)
            f_ids = torch.tensor(ids, dtype=torch.int64, device=device)
            f_scale = torch.tensor(scale, dtype=torch.float32, device=device)
        return cls(
            size=len(rows),
            keys=keys,
            utility_rows=u_rows,
            utility_sigma=u_sigma,
            utility_all=len(util) == len(rows) and bool(util),
            focus_rows=f_rows,
            focus_ids=f_ids,
            focus_scale=f_scale,
            weights=None if weights is None else weights.to(device=device, dtype=torch.float32),
        )

    @property
    def row_keys(self) -> torch.Tensor:
        """(B, 2) int32: one key per row (its first noise component), e.g. for keyed sampling."""
        return self.keys[:, 0, :]

    @property
    def is_identity(self) -> bool:
        """True when no row is modulated: the batch's logits pass through untouched."""
        return self.utility_rows is None and self.focus_rows is None
