"""The greedy token of a modulated decoding step, computing noise only where it can change the answer.

``modulated_argmax(logits, batch, position)`` equals ``modulate(logits, batch, position).argmax(-1)``
exactly (same keyed draws, same float32 operations, first index on ties), but draws noise for a few
candidates per row instead of all V logits. The keyed normal is bounded: its uniform has 24 bits, so
|ε| <= `Z_BOUND` (about 5.4). A row's winner scores at least what its clean top token scores (``max(z) +
σ·ε_top``, computed first), and a token can only reach that when ``z_i >= max(z) + σ·ε_top - σ·Z_BOUND``
(wider by the strength of a suppressing focus), or when it is a focus target (always scored). When the
candidates exceed `DENSE_SHARE` of the batch, the dense path is cheaper and is taken instead.

Only batches without mixture weights (generation's hash-table keys; classifiers have few classes and use
`modulate`) take the sparse path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from service.modulation.batch import ModulationBatch
from service.modulation.modulators import (
    FOCUS_STREAM,
    UTILITY_STREAM,
    Position,
    _component_noise,
    _positions,
    component_stream_keys,
    modulate,
)
from service.modulation.noise import bits_to_centered, keyed_normal

#: The largest |ε| `keyed_normal` can return (its most extreme 24-bit input), with a margin for erfinv's
#: float32 rounding.
Z_BOUND = float(bits_to_centered(torch.tensor([(1 << 24) - 1])).erfinv().mul(math.sqrt(2.0))) * 1.001 + 1e-3
#: Above this share of the batch's logits as candidates, the dense `modulate` is cheaper.
DENSE_SHARE = 0.125
_SLACK = 1e-3  # logit units: covers float32 rounding of l + σ·ε against the bound


def modulated_argmax(logits: torch.Tensor, batch: ModulationBatch, position: Position = None) -> torch.Tensor:
    """(B,) int64: the argmax of each row of ``modulate(logits, batch, position)``; logits (B, V)."""
    if batch.is_identity:
        return logits.argmax(dim=-1)
    if batch.weights is not None or logits.dim() != 2:
        return modulate(logits, batch, position).argmax(dim=-1)
    z = logits.float()
    pos = _positions(position, z.shape[0], z.device)
    cand = _candidates(z, batch, pos)
    if cand is None:
        return modulate(logits, batch, position).argmax(dim=-1)
    scores = _scores(z, cand.pairs, cand.sigma, batch, pos, cand.keys)
    return _first_argmax(scores, cand.pairs[:, 0], cand.pairs[:, 1], *z.shape)


def candidates(z: torch.Tensor, batch: ModulationBatch, position: Position = None) -> torch.Tensor:
    """(N, 2) int64 (row, column) pairs that `modulated_argmax` scores for float32 logits ``z`` (B, V)
    (the whole band when the dense path would be taken)."""
    cand = _candidates(z, batch, _positions(position, z.shape[0], z.device), dense_share=1.0)
    if cand is None:
        raise ValueError("a row's maximum logit is not finite: modulated_argmax takes the dense path")
    return cand.pairs


@dataclass(frozen=True, slots=True)
class _Candidates:
    pairs: torch.Tensor  # (N, 2) int64 row-major (row, column)
    sigma: torch.Tensor  # (B,) each row's utility σ (0 without)
    keys: torch.Tensor | None  # (B, M, 2) the step's utility keys (`_utility_keys`)


def _candidates(
    z: torch.Tensor,
    batch: ModulationBatch,
    pos: torch.Tensor | None,
    dense_share: float = DENSE_SHARE,
    in_numpy: bool | None = None,
) -> _Candidates | None:
    """The tokens that can be a row's modulated argmax, focus targets included; None when they are more
    than ``dense_share`` of the batch (the dense path is cheaper then) or a row's maximum is not finite.

    The winner scores at least what the row's clean top token scores, ``floor = max(z) + σ·ε_top -
    s·Z_BOUND`` (``s``: the row's largest suppressing focus strength, in case the top token is a
    suppressed target), and a token without focus scores at most ``z + σ·Z_BOUND``: only tokens with
    ``z >= floor - σ·Z_BOUND`` can win (``_SLACK`` covers float32 rounding). Boosted targets are always
    scored. That band is about half as wide as the one without ε_top (``max(z) - 2σ·Z_BOUND``): on
    SmolLM2's decode logits at σ 1.066, 92 candidates per row instead of 2,250. ``in_numpy``: select
    in NumPy (default: for CPU tensors) or in torch (accelerators; tests force it on a CPU)."""
    in_numpy = z.device.type == "cpu" if in_numpy is None else in_numpy
    sigma = _row_sigma(batch, z.shape[0], z.device)
    suppress = torch.zeros_like(sigma)
    if batch.focus_rows is not None and batch.focus_scale is not None:
        suppress.index_copy_(0, batch.focus_rows, (-batch.focus_scale).clamp_min(0.0).amax(dim=1))
    top, top_col = _row_max(z, in_numpy)
    if not bool(torch.isfinite(top).all()):
        return None
    keys = _utility_keys(batch, pos)
    floor = top - suppress * Z_BOUND
    if keys is not None:
        rows = torch.arange(z.shape[0], device=z.device)
        floor = floor + _utility_noise(keys, rows, top_col) * sigma
    threshold = floor - sigma * Z_BOUND - 2.0 * _SLACK * (1.0 + top.abs())
    pairs = _pairs_above(z, threshold, batch, dense_share, in_numpy)
    return None if pairs is None else _Candidates(pairs, sigma, keys)


def _row_max(z: torch.Tensor, in_numpy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) each row's maximum and (B,) int64 a column holding it. On a CPU in NumPy: torch's argmax
    over (32, 49152) takes 0.67 ms there, NumPy's 0.1 ms (two cores)."""
    if not in_numpy:
        values, cols = z.max(dim=1)
        return values, cols
    a = z.detach().numpy()
    cols_np = a.argmax(axis=1)
    return torch.from_numpy(a[np.arange(len(a)), cols_np]), torch.from_numpy(cols_np.astype(np.int64))


def _pairs_above(
    z: torch.Tensor, threshold: torch.Tensor, batch: ModulationBatch, dense_share: float, in_numpy: bool
) -> torch.Tensor | None:
    """(N, 2) int64 row-major (row, column) pairs with ``z >= threshold[row]`` plus every focus target;
    None when they exceed ``dense_share`` of ``z``. On a CPU in NumPy (the comparison, count and
    nonzero are 3-4x faster there than torch's over a (32, 49152) batch)."""
    if not in_numpy:
        mask = z >= threshold[:, None]
        if batch.focus_rows is not None and batch.focus_ids is not None:
            mask[batch.focus_rows[:, None], batch.focus_ids] = True
        if int(torch.count_nonzero(mask)) > dense_share * mask.numel():
            return None
        return mask.nonzero()
    a = z.detach().numpy()
    mask_np = a >= threshold.numpy()[:, None]
    if batch.focus_rows is not None and batch.focus_ids is not None:
        mask_np[batch.focus_rows.numpy()[:, None], batch.focus_ids.numpy()] = True
    if np.count_nonzero(mask_np) > dense_share * mask_np.size:
        return None
    flat = np.flatnonzero(mask_np)
    return torch.from_numpy(np.stack((flat // a.shape[1], flat % a.shape[1]), axis=1).astype(np.int64))


def _row_sigma(batch: ModulationBatch, rows: int, device: torch.device) -> torch.Tensor:
    sigma = torch.zeros(rows, dtype=torch.float32, device=device)
    if batch.utility_rows is not None and batch.utility_sigma is not None:
        sigma.index_copy_(0, batch.utility_rows, batch.utility_sigma)
    return sigma


def _scores(
    z: torch.Tensor,
    pairs: torch.Tensor,
    sigma: torch.Tensor,
    batch: ModulationBatch,
    pos: torch.Tensor | None,
    keys: torch.Tensor | None,
) -> torch.Tensor:
    """(N,) the modulated logits at ``pairs``, bit-identical to `modulate`'s at those elements (a row
    without utility noise adds ε·0 = 0, which leaves every finite logit as it is)."""
    row, col = pairs[:, 0], pairs[:, 1]
    flat = row * z.shape[1] + col
    values = z[row, col]  # gathers without copying a non-contiguous (B, V) view (a step's last position)
    if keys is not None:
        values = values + _utility_noise(keys, row, col) * sigma.index_select(0, row)
    if batch.focus_rows is not None:
        _add_focus_(values, flat, batch, pos, z.shape[1])
    return values


def _utility_keys(batch: ModulationBatch, pos: torch.Tensor | None) -> torch.Tensor | None:
    """(B, M, 2) each row's utility-stream key per component at this step, as `modulators._component_noise`
    derives them (derived once per step, for the top tokens and the candidates); None without utility."""
    if batch.utility_rows is None:
        return None
    return component_stream_keys(batch.keys, pos, UTILITY_STREAM)


def _utility_noise(keys: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """ε at (row, col) pairs from `_utility_keys` (element n: component n mod M), as `modulate` draws it."""
    element_keys = keys[row, col.remainder(keys.shape[1])]  # (N, 2)
    return keyed_normal(element_keys[:, None, :], col.to(torch.int32)[:, None]).squeeze(1)


def _add_focus_(
    values: torch.Tensor, flat: torch.Tensor, batch: ModulationBatch, pos: torch.Tensor | None, vocab: int
) -> None:
    """Add ±σ_f·|ε| at the focus targets (always candidates), after the utility noise, as `modulate` does."""
    rows, ids, scale = batch.focus_rows, batch.focus_ids, batch.focus_scale
    assert rows is not None and ids is not None and scale is not None
    sub_pos = None if pos is None else pos.index_select(0, rows)
    noise = _component_noise(batch.keys.index_select(0, rows), sub_pos, FOCUS_STREAM, ids.to(torch.int32))
    term = noise.abs_().mul_(scale)
    where = torch.searchsorted(flat, rows[:, None] * vocab + ids)
    values.index_put_((where.flatten(),), term.flatten(), accumulate=True)


def _first_argmax(
    values: torch.Tensor, row: torch.Tensor, col: torch.Tensor, rows: int, vocab: int
) -> torch.Tensor:
    """Per row, the smallest column among its maximal values (torch.argmax's rule on ties)."""
    best = torch.full((rows,), float("-inf"), dtype=values.dtype, device=values.device)
    best.scatter_reduce_(0, row, values, reduce="amax")
    winner = torch.where(values == best[row], col, vocab)
    out = torch.full((rows,), vocab, dtype=torch.int64, device=values.device)
    return out.scatter_reduce_(0, row, winner, reduce="amin")
