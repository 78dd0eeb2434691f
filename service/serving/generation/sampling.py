"""Choosing each row's next token from its modulated logits: greedy, or keyed sampling.

Sampling draws by inverse CDF with one keyed uniform per row and step, from `keyed_uniform` on a stream
of its own (the modulation noise uses streams 1 and 2), so the same key, step and logits always give the
same token, whatever else shares the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from service.modulation.noise import derive_stream_keys, keyed_uniform

SAMPLING_STREAM = 3


@dataclass(frozen=True, slots=True)
class SamplingBatch:
    """Per-row sampling settings of one batch composition, as tensors.

    rows: (S,) int64 rows that sample (temperature > 0), or None when every row is greedy.
    inv_temperature: (S, 1) float32 1 / temperature of those rows.
    top_p: (S, 1) float32 nucleus mass (1.0 where unused), or None when no sampled row uses top_p < 1.
    """

    rows: torch.Tensor | None
    inv_temperature: torch.Tensor | None
    top_p: torch.Tensor | None

    @classmethod
    def build(
        cls, temperatures: Sequence[float], top_ps: Sequence[float | None], device: torch.device
    ) -> SamplingBatch:
        sampled = [i for i, t in enumerate(temperatures) if t > 0.0]
        if not sampled:
            return cls(None, None, None)
        rows = torch.tensor(sampled, dtype=torch.int64, device=device)
        inv_t = torch.tensor([[1.0 / temperatures[i]] for i in sampled], dtype=torch.float32, device=device)
        ps = [1.0 if (p := top_ps[i]) is None else p for i in sampled]
        top_p = None
        if any(p < 1.0 for p in ps):
            top_p = torch.tensor([[p] for p in ps], dtype=torch.float32, device=device)
        return cls(rows, inv_t, top_p)


def choose_tokens(
    modulated: torch.Tensor,
    greedy: torch.Tensor,
    sampling: SamplingBatch,
    keys: torch.Tensor,
    positions: torch.Tensor,
) -> torch.Tensor:
    """The next token of every row.

    Args:
        modulated: (B, V) float32 modulated logits of this step.
        greedy: (B,) int64 argmax of ``modulated``: the token of greedy rows.
        sampling: the batch's sampling settings.
        keys: (B, 2) int32 row keys; positions: (B,) int32 each row's decoding step.

    Returns:
        (B,) int64 token ids (``greedy`` itself when no row samples).
    """
    rows, inv_t = sampling.rows, sampling.inv_temperature
    if rows is None or inv_t is None:
        return greedy
    probs = torch.softmax(modulated.index_select(0, rows).mul_(inv_t), dim=-1)
    stream = derive_stream_keys(keys.index_select(0, rows), SAMPLING_STREAM, positions.index_select(0, rows))
    u = keyed_uniform(stream, torch.zeros(1, dtype=torch.int32, device=modulated.device))  # (S, 1)
    if sampling.top_p is None:
        picked = _inverse_cdf(probs, u)
    else:
        picked = _inverse_cdf_top_p(probs, u, sampling.top_p)
    return greedy.clone().index_copy_(0, rows, picked)


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(S,) index of the first token whose cumulative probability exceeds u (scaled by the total mass).

    u < 1 strictly, but u * total can still round up to the total: the index is then clamped to the last
    token of positive probability, never to a token of probability 0.
    """
    cdf = probs.cumsum(dim=-1)
    idx = torch.searchsorted(cdf, u.mul(cdf[:, -1:]), right=True).squeeze(1)
    last = probs.shape[1] - 1 - (probs > 0).flip(dims=(1,)).to(torch.int8).argmax(dim=1)
    return torch.minimum(idx, last)


def _inverse_cdf_top_p(probs: torch.Tensor, u: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Inverse CDF over each row's nucleus: the most probable tokens whose mass before them is < top_p."""
    sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
    before = sorted_p.cumsum(dim=-1).sub_(sorted_p)
    sorted_p = sorted_p.masked_fill_(before >= top_p, 0.0)
    picked = _inverse_cdf(sorted_p, u)
    return order.gather(1, picked[:, None]).squeeze(1)
