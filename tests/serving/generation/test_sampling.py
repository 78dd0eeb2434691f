"""Keyed sampling: the right distribution, the nucleus respected, the same key giving the same token."""

from __future__ import annotations

import torch

from service.modulation.keys import as_int32
from service.serving.generation.sampling import SamplingBatch, choose_tokens

CPU = torch.device("cpu")


def _keys(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    words = torch.randint(0, 1 << 32, (n, 2), generator=gen, dtype=torch.int64)
    return torch.tensor([[as_int32(int(w)) for w in row] for row in words], dtype=torch.int32)


def _draw(probs: torch.Tensor, n: int, top_p: float | None = None) -> torch.Tensor:
    """n draws from one distribution: n rows with the same logits and n different keys."""
    logits = probs.log().expand(n, -1).contiguous()
    sampling = SamplingBatch.build([1.0] * n, [top_p] * n, CPU)
    positions = torch.zeros(n, dtype=torch.int32)
    return choose_tokens(logits, logits.argmax(-1), sampling, _keys(n), positions)


def test_draws_follow_the_softmax_distribution() -> None:
    probs = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
    n = 20_000
    freq = torch.bincount(_draw(probs, n), minlength=5).float() / n
    # 4 binomial standard errors at the largest p: 4 * sqrt(0.25 / 20000) = 0.014
    assert torch.allclose(freq, probs, atol=0.014), freq


def test_top_p_keeps_to_the_nucleus_and_renormalises() -> None:
    probs = torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04])
    n = 20_000
    freq = torch.bincount(_draw(probs, n, top_p=0.75), minlength=5).float() / n
    # mass before token 1 is 0.5 < 0.75 (kept); before token 2 it is 0.8 (dropped)
    assert freq[2:].sum() == 0
    assert torch.allclose(freq[:2], torch.tensor([0.625, 0.375]), atol=0.015), freq


def test_same_key_and_step_give_the_same_token_and_steps_differ() -> None:
    logits = torch.randn(1, 1000, generator=torch.Generator().manual_seed(3)).expand(64, -1).contiguous()
    keys = _keys(1, seed=7).expand(64, -1).contiguous()
    sampling = SamplingBatch.build([1.0] * 64, [None] * 64, CPU)
    same_step = choose_tokens(logits, logits.argmax(-1), sampling, keys, torch.zeros(64, dtype=torch.int32))
    assert bool((same_step == same_step[0]).all())
    steps = torch.arange(64, dtype=torch.int32)
    per_step = choose_tokens(logits, logits.argmax(-1), sampling, keys, steps)
    assert len(set(per_step.tolist())) > 10
    again = choose_tokens(logits, logits.argmax(-1), sampling, keys, steps)
    assert torch.equal(per_step, again)


def test_greedy_rows_keep_the_argmax_in_a_mixed_batch() -> None:
    logits = torch.randn(4, 500, generator=torch.Generator().manual_seed(5))
    greedy = logits.argmax(-1)
    sampling = SamplingBatch.build([0.0, 1.5, 0.0, 1.5], [None, 0.9, None, None], CPU)
    assert sampling.rows is not None and sampling.rows.tolist() == [1, 3]
    out = choose_tokens(logits, greedy, sampling, _keys(4), torch.zeros(4, dtype=torch.int32))
    assert out[0] == greedy[0] and out[2] == greedy[2]
    assert SamplingBatch.build([0.0, 0.0], [0.5, None], CPU).rows is None


def test_a_row_draw_does_not_depend_on_its_batch_neighbours() -> None:
    logits = torch.randn(3, 800, generator=torch.Generator().manual_seed(9))
    keys = _keys(3, seed=11)
    pos = torch.tensor([4, 9, 2], dtype=torch.int32)
    full = choose_tokens(logits, logits.argmax(-1), SamplingBatch.build([0.7] * 3, [0.9] * 3, CPU), keys, pos)
    alone = choose_tokens(
        logits[1:2], logits[1:2].argmax(-1), SamplingBatch.build([0.7], [0.9], CPU), keys[1:2], pos[1:2]
    )
    assert full[1] == alone[0]
