"""The running batch's KV cache: prefill, one decoding step, admission (merge) and pruning (select).

Rows are left-padded to a common cache width, so each row's real tokens are the last ``lengths[i]``
columns of the cache. The attention mask is therefore a function of (lengths, width) and is never stored;
when no row is padded no mask is passed at all, which is exactly what `generate` does for an unpadded
batch (same kernels, same numbers). Position ids count each row's real tokens, so a row's positions
do not depend on the padding it travels with.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(slots=True)
class KVBatch:
    """cache: a transformers ``DynamicCache`` whose layers hold (B, heads, width, head_dim) tensors;
    lengths: real tokens per row; width: cache columns (the longest row's length after trimming)."""

    cache: Any
    lengths: list[int]
    width: int

    def attention_mask(self, extra: int, device: torch.device) -> torch.Tensor | None:
        """(B, width + extra) int64, 1 on real tokens, for a step that appends ``extra`` real tokens to
        every row; None when no row is padded."""
        if all(n == self.width for n in self.lengths):
            return None
        pad = torch.tensor([self.width - n for n in self.lengths], device=device)
        cols = torch.arange(self.width + extra, device=device)
        return (cols[None, :] >= pad[:, None]).to(torch.int64)


def cache_is_mergeable(model: PreTrainedModel) -> bool:
    """True when every cache layer of the model is a plain full-attention ``DynamicLayer``: only then can
    rows be padded and concatenated into a running batch (continuous batching)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = DynamicCache(config=model.config).layers
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def prefill(
    model: PreTrainedModel, prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, KVBatch]:
    """Run the prompts (left-padded) through the model; returns the last position's logits (n, V) and the
    new rows' cache."""
    from transformers import DynamicCache

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.int64)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.int64)
    kv = KVBatch(DynamicCache(config=model.config), [len(p) for p in prompts], width)
    mask = kv.attention_mask(0, device)
    if mask is None:
        positions = torch.arange(width, device=device)[None, :].expand(len(prompts), -1)
    else:
        positions = (mask.cumsum(dim=-1) - 1).clamp_(min=0)
    # Only the last position goes through the LM head when the model allows it, as in `generate`.
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask,
        position_ids=positions,
        past_key_values=kv.cache,
        use_cache=True,
        **extra,
    )
    return out.logits[:, -1, :], kv


def decode(model: PreTrainedModel, kv: KVBatch, tokens: torch.Tensor) -> torch.Tensor:
    """Feed one token per row ((B,) int64 on the model's device); returns the next logits (B, V)."""
    mask = kv.attention_mask(1, tokens.device)
    positions = torch.tensor(kv.lengths, dtype=torch.int64, device=tokens.device)[:, None]
    out = model(
        input_ids=tokens[:, None],
        attention_mask=mask,
        position_ids=positions,
        past_key_values=kv.cache,
        use_cache=True,
    )
    kv.lengths = [n + 1 for n in kv.lengths]
    kv.width += 1
    logits: torch.Tensor = out.logits[:, -1, :]
    return logits


def select(kv: KVBatch, keep: Sequence[int], *, trim: bool) -> None:
    """Keep only rows ``keep`` (in that order); with ``trim``, drop leading columns that became padding
    in every remaining row so finished long rows stop costing attention."""
    index = torch.tensor(list(keep), dtype=torch.int64, device=_cache_device(kv))
    kv.cache.batch_select_indices(index)
    kv.lengths = [kv.lengths[i] for i in keep]
    cut = kv.width - max(kv.lengths)
    if trim and cut > 0:
        for layer in kv.cache.layers:
            layer.keys = layer.keys[:, :, cut:, :]
            layer.values = layer.values[:, :, cut:, :]
        kv.width -= cut


def merge(into: KVBatch, new: KVBatch) -> None:
    """Append ``new``'s rows after ``into``'s, left-padding the narrower cache (mergeable caches only)."""
    width = max(into.width, new.width)
    pad_a, pad_b = width - into.width, width - new.width
    for a, b in zip(into.cache.layers, new.cache.layers, strict=True):
        a.keys = torch.cat([_left_pad(a.keys, pad_a), _left_pad(b.keys, pad_b)])
        a.values = torch.cat([_left_pad(a.values, pad_a), _left_pad(b.values, pad_b)])
    into.lengths = into.lengths + new.lengths
    into.width = width


def _left_pad(t: torch.Tensor, n: int) -> torch.Tensor:
    return t if n == 0 else torch.nn.functional.pad(t, (0, 0, n, 0))


def _cache_device(kv: KVBatch) -> torch.device:
    device: torch.device = kv.cache.layers[0].keys.device
    return device
