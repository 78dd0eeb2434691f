"""The two AIM modulators as pure ``logits -> logits`` functions over a whole batch.

Layouts: (B, C) classification, (B, C, H, W) segmentation (independent noise per pixel), (B, V) one
decoding step. Every function returns a new float32 tensor (computed in float32 whatever the input dtype)
and never modifies its input. Rows the batch does not modulate are bit-identical to ``logits.float()``.
Noise is keyed (see `service.modulation.noise`): the same row key, position and layout give the same output.
"""

from __future__ import annotations

import torch

from service.modulation.batch import ModulationBatch
from service.modulation.noise import derive_stream_keys, keyed_normal

UTILITY_STREAM = 1
FOCUS_STREAM = 2

Position = int | torch.Tensor | None


def modulate(logits: torch.Tensor, batch: ModulationBatch, position: Position = None) -> torch.Tensor:
    """Utility then focus modulation in one call.

    Args:
        logits: (B, C) / (B, C, H, W) / (B, V), any floating dtype, any device.
        batch: the rows' settings, built for B rows on ``logits.device``.
        position: decoding step(s) entering the noise key: an int shared by all rows, a (B,) tensor, or
            None for single-shot outputs.

    Returns:
        float32 logits of the same shape. When no row is modulated this is ``logits.float()``, which is
        ``logits`` itself for float32 input: treat the result as read-only.
    """
    if batch.is_identity:
        return logits.float()
    out = _fresh(logits)
    pos = _positions(position, batch.size, logits.device)
    _add_utility_(out, batch, pos)
    _add_focus_(out, batch, pos)
    return out


def utility_modulation(
    logits: torch.Tensor, batch: ModulationBatch, position: Position = None
) -> torch.Tensor:
    """z' = z + σ_r·ε with ε ~ N(0, 1) i.i.d. per logit (per pixel and class for segmentation)."""
    out = _fresh(logits)
    _add_utility_(out, batch, _positions(position, batch.size, logits.device))
    return out


def focus_modulation(logits: torch.Tensor, batch: ModulationBatch, position: Position = None) -> torch.Tensor:
    """z'_t = z_t ± σ_f·|ε_t| on each row's target classes only; ε_t ~ N(0, 1) (folded normal)."""
    out = _fresh(logits)
    _add_focus_(out, batch, _positions(position, batch.size, logits.device))
    return out


def _fresh(logits: torch.Tensor) -> torch.Tensor:
    return logits.to(dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)


def _positions(position: Position, size: int, device: torch.device) -> torch.Tensor | None:
    if position is None:
        return None
    if isinstance(position, int):
        return torch.full((size,), position, dtype=torch.int32, device=device)
    return position.to(device=device, dtype=torch.int32)


def _component_noise(
    keys: torch.Tensor,
    pos: torch.Tensor | None,
    stream: int,
    index: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """(R, N) float32 N(0, 1) noise of rows with component keys (R, M, 2) at element ``index``.

    ``index``: (N,) shared (always arange(N) here: position = element id) or (R, N) per row. With M > 1
    and weights (R, M) the noise is sum_m weight_m * draw_m (unit-norm weights: exactly N(0, 1) per element
    for a fixed row). With M > 1 and no weights (hash tables: equal shares), element n takes its draw from
    component n mod M only: one draw per element instead of M, still exactly N(0, 1) per element, and two
    rows sharing s of their M components share the draws of s/M of the elements, the same correlation s/M
    a normalised sum of M draws gives.
    """
    rows, comps = keys.shape[0], keys.shape[1]
    if comps == 1:
        return keyed_normal(derive_stream_keys(keys[:, 0, :], stream, pos), index)
    stream_keys = component_stream_keys(keys, pos, stream).view(-1, 2)
    if weights is None:
        per_row = stream_keys.view(rows, comps, 2)
        if index.dim() == 1:  # arange(N) (utility): component m draws elements m, m + M, m + 2M, ...
            out = torch.empty(rows, index.shape[0], dtype=torch.float32, device=index.device)
            for m in range(comps):
                out[:, m::comps] = keyed_normal(per_row[:, m], index[m::comps])
            return out
        pick = index.remainder(comps).long()[:, :, None].expand(-1, -1, 2)  # (R, N, 2): element id mod M
        return keyed_normal(per_row.gather(1, pick), index)
    flat_index = index if index.dim() == 1 else index.repeat_interleave(comps, dim=0)
    draws = keyed_normal(stream_keys, flat_index)
    return torch.bmm(weights[:, None, :], draws.view(rows, comps, -1)).squeeze(1)


def component_stream_keys(keys: torch.Tensor, pos: torch.Tensor | None, stream: int) -> torch.Tensor:
    """(R, M, 2) the keys of ``stream`` for component keys (R, M, 2) at each row's position (R,) or None:
    what `_component_noise` draws from (`greedy` derives them once per step for its candidates)."""
    comps = keys.shape[1]
    flat_pos = None if pos is None else pos.repeat_interleave(comps)
    return derive_stream_keys(keys.reshape(-1, 2), stream, flat_pos).view(-1, comps, 2)


def _add_utility_(out: torch.Tensor, batch: ModulationBatch, pos: torch.Tensor | None) -> None:
    """In place on a fresh contiguous float32 tensor: add σ_r·ε to every element of the noisy rows."""
    rows, sigma = batch.utility_rows, batch.utility_sigma
    if rows is None or sigma is None:
        return
    flat = out.view(out.shape[0], -1)
    index = torch.arange(flat.shape[1], dtype=torch.int32, device=out.device)
    if batch.utility_all:
        noise = _component_noise(batch.keys, pos, UTILITY_STREAM, index, batch.weights)
        flat.add_(noise.mul_(sigma[:, None]))
        return
    sub_pos = None if pos is None else pos.index_select(0, rows)
    weights = None if batch.weights is None else batch.weights.index_select(0, rows)
    noise = _component_noise(batch.keys.index_select(0, rows), sub_pos, UTILITY_STREAM, index, weights)
    flat.index_add_(0, rows, noise.mul_(sigma[:, None]))


def _add_focus_(out: torch.Tensor, batch: ModulationBatch, pos: torch.Tensor | None) -> None:
    """In place: add ±σ_f·|ε| at each focus row's target classes (every pixel of them for segmentation).

    Noise is generated only at the targeted elements: the counter-based generator gives element n of a row
    without generating the others.
    """
    rows, ids, scale = batch.focus_rows, batch.focus_ids, batch.focus_scale
    if rows is None or ids is None or scale is None:
        return
    view = out.view(out.shape[0], out.shape[1], -1)
    pixels = view.shape[2]
    pixel = torch.arange(pixels, dtype=torch.int64, device=out.device)
    sub_pos = None if pos is None else pos.index_select(0, rows)
    element = (ids[:, :, None] * pixels + pixel).to(torch.int32)  # (F, K, P) flat index c*P + p
    keys = batch.keys.index_select(0, rows)
    weights = None if batch.weights is None else batch.weights.index_select(0, rows)
    noise = _component_noise(keys, sub_pos, FOCUS_STREAM, element.view(len(rows), -1), weights)
    noise = noise.abs_().view(element.shape).mul_(scale[:, :, None])
    view.index_put_((rows[:, None, None], ids[:, :, None], pixel), noise, accumulate=True)
