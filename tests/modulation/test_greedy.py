"""`modulated_argmax` equals `modulate(...).argmax(-1)` exactly, and draws noise for few tokens."""

from __future__ import annotations

import itertools

import pytest
import torch

from service.modulation import BOOST, SUPPRESS, ModulationBatch, RowSpec, greedy, modulate
from service.modulation.greedy import Z_BOUND, candidates, modulated_argmax
from service.modulation.keys import derive_row_key
from service.modulation.noise import keyed_normal

SIGMAS = (0.0, 0.3, 1.0, 2.5)


def _logits(rows: int, vocab: int, seed: int, spread: float = 4.0) -> torch.Tensor:
    """LLM-like logits: a long tail well below a few leading tokens (fixed generator)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, vocab, generator=g) * spread
    lead = torch.randint(0, vocab, (rows, 8), generator=g)
    return z.scatter_add_(1, lead, torch.rand(rows, 8, generator=g) * 6 + 12)


def _specs(rows: int, vocab: int, seed: int) -> list[RowSpec]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for r in range(rows):
        sigma = SIGMAS[(r + seed) % len(SIGMAS)]
        focus: tuple[int, ...] = ()
        if r % 3 == 1:
            focus = tuple(torch.randperm(vocab, generator=g)[: 1 + r % 4].tolist())
        sign = BOOST if r % 2 else SUPPRESS
        key = derive_row_key(b"greedy-test", f"tenant-{seed}-{r}", b"x")
        out.append(RowSpec(sigma, key, focus, 3.0 if focus else 0.0, sign))
    return out


@pytest.mark.parametrize(("rows", "vocab", "seed"), [(1, 49152, 0), (8, 4096, 1), (32, 2048, 2), (5, 300, 3)])
@pytest.mark.parametrize("codes", [False, True])
def test_equals_dense_argmax(rows: int, vocab: int, seed: int, codes: bool) -> None:
    logits = _logits(rows, vocab, seed)
    specs = _specs(rows, vocab, seed)
    table_codes = torch.randint(0, 1 << 20, (rows, 4), generator=torch.Generator().manual_seed(seed))
    batch = ModulationBatch.build(specs, vocab, codes=table_codes.to(torch.int32) if codes else None)
    for position in (None, 0, 7, torch.arange(rows, dtype=torch.int32) * 3):
        dense = modulate(logits, batch, position).argmax(dim=-1)
        assert torch.equal(modulated_argmax(logits, batch, position), dense)


def test_equals_dense_on_many_keys_and_ties() -> None:
    """600 rows of small vocabularies with ties at the top: every winner and tie rule matches."""
    vocab = 64
    logits = torch.randint(0, 6, (600, vocab)).float()  # many exact ties
    specs = [
        RowSpec(s, derive_row_key(b"ties", f"t{i}", b"y"))
        for i, s in zip(range(600), itertools.cycle((0.0, 0.05, 0.5)), strict=False)
    ]
    batch = ModulationBatch.build(specs, vocab)
    for position in (None, 3):
        dense = modulate(logits, batch, position).argmax(dim=-1)
        assert torch.equal(modulated_argmax(logits, batch, position), dense)


def test_bound_covers_the_generator() -> None:
    """Z_BOUND is above every |ε| over 2^22 keyed draws and above the generator's extreme input."""
    keys = torch.tensor([[123, -456]], dtype=torch.int32)
    eps = keyed_normal(keys, torch.arange(1 << 22, dtype=torch.int32))
    assert eps.abs().max().item() < Z_BOUND < 5.6


def test_few_candidates_for_llm_like_rows() -> None:
    """At σ 0.58 on smollm2's vocabulary the candidates are a small share of the batch (measured on the
    preset's own logits: 235 per row of 49,152)."""
    logits = _logits(16, 49152, 5, spread=2.0)
    specs = [RowSpec(0.58, derive_row_key(b"c", f"t{i}", b"z")) for i in range(16)]
    cand = candidates(logits, ModulationBatch.build(specs, 49152))
    assert 16 <= cand.shape[0] < 0.01 * 16 * 49152


def test_scoring_the_top_token_first_narrows_the_band() -> None:
    """At the smollm2 free tier's σ (1.066 on its chat calibration) fewer than half the tokens within
    2σ·Z_BOUND of the maximum stay candidates once the top token's own noise sets the floor (97 of 678
    on these rows), and the winner is still the dense one."""
    logits = _logits(16, 49152, 5, spread=2.0)
    specs = [RowSpec(1.066, derive_row_key(b"c", f"t{i}", b"z")) for i in range(16)]
    batch = ModulationBatch.build(specs, 49152)
    band = int((logits >= (logits.amax(dim=1) - 2 * 1.066 * Z_BOUND)[:, None]).sum())
    assert candidates(logits, batch, 4).shape[0] < 0.5 * band
    assert torch.equal(modulated_argmax(logits, batch, 4), modulate(logits, batch, 4).argmax(dim=-1))


@pytest.mark.parametrize("sign", [BOOST, SUPPRESS])
def test_equals_dense_when_the_top_token_is_a_focus_target(sign: int) -> None:
    """The floor comes from the top token, so a focus on that very token (suppressed: its score falls
    by up to s·Z_BOUND) must not cut the winner out."""
    logits = _logits(12, 4096, 7, spread=1.0)
    top = logits.argmax(dim=1)
    specs = [
        RowSpec(sigma, derive_row_key(b"top-focus", f"t{r}", b"w"), (int(top[r]),), strength, sign)
        for r, (sigma, strength) in enumerate(itertools.product((0.0, 0.4, 1.066), (0.5, 2.0, 6.0, 12.0)))
    ]
    batch = ModulationBatch.build(specs, 4096)
    for position in (None, 5):
        dense = modulate(logits, batch, position).argmax(dim=-1)
        assert torch.equal(modulated_argmax(logits, batch, position), dense)
    if sign == SUPPRESS:  # the case under test happens: some suppressed top token loses its row
        assert not torch.equal(dense, top)


def test_a_far_token_with_extreme_noise_still_wins() -> None:
    """Adversarial rows built from the keyed draws themselves: the top token (logit 0) is beaten by the
    token with the row's largest noise, placed just high enough to win (n_top - n_i + 0.01 below), the
    rest far below. Only a floor from the top token's own signed noise keeps that token a candidate."""
    rows, vocab = 16, 4096
    specs = [RowSpec(1.066, derive_row_key(b"far", f"t{r}", b"v")) for r in range(rows)]
    batch = ModulationBatch.build(specs, vocab)
    noise = modulate(torch.zeros(rows, vocab), batch, 9)  # σ·ε of every token
    far = noise[:, 1:].argmax(dim=1) + 1
    logits = torch.full((rows, vocab), -100.0)
    logits[:, 0] = 0.0
    lift = noise[:, 0] - noise[torch.arange(rows), far] + 0.01
    logits[torch.arange(rows), far] = lift
    assert bool((lift < -1.0).all())  # each winner starts well below the top token
    dense = modulate(logits, batch, 9).argmax(dim=-1)
    assert torch.equal(dense, far)
    assert torch.equal(modulated_argmax(logits, batch, 9), dense)


def test_a_boosted_far_target_can_win() -> None:
    """A focus target far below the band (logit -10 against a top of 0) wins whenever its boost lifts it
    past the top; it is scored however far below it starts."""
    rows, vocab = 32, 2048
    logits = torch.full((rows, vocab), -100.0)
    logits[:, 0], logits[:, 1] = 0.0, -10.0
    specs = [RowSpec(0.5, derive_row_key(b"boost", f"t{r}", b"u"), (1,), 12.0, BOOST) for r in range(rows)]
    batch = ModulationBatch.build(specs, vocab)
    dense = modulate(logits, batch, 2).argmax(dim=-1)
    assert 0 < int((dense == 1).sum()) < rows  # both outcomes occur
    assert torch.equal(modulated_argmax(logits, batch, 2), dense)


def test_a_suppressed_top_loses_to_a_token_below_the_unsuppressed_floor() -> None:
    """Rows where the top token (0) is suppressed and the runner-up sits just below ``max + σ·ε_top -
    σ·Z_BOUND`` (outside the floor a suppression did not lower) yet wins: the suppressed floor keeps it."""
    vocab, sigma, strength = 512, 0.4, 12.0
    keys = [derive_row_key(b"suppress", f"t{r}", b"s") for r in range(200)]
    plain = modulate(torch.zeros(200, vocab), ModulationBatch.build([RowSpec(sigma, k) for k in keys], vocab))
    focused = ModulationBatch.build([RowSpec(sigma, k, (0,), strength, SUPPRESS) for k in keys], vocab)
    top_score = modulate(torch.zeros(200, vocab), focused)[:, 0]  # σ·ε_0 - s·|ε'_0|
    depth = sigma * Z_BOUND - plain[:, 0] + 0.05  # token 1 at -depth: below the unsuppressed floor
    wins = -depth + plain[:, 1] > top_score
    assert int(wins.sum()) >= 10
    picked = [k for k, w in zip(keys, wins.tolist(), strict=True) if w]
    logits = torch.full((len(picked), vocab), -100.0)
    logits[:, 0], logits[:, 1] = 0.0, -depth[wins]
    batch = ModulationBatch.build([RowSpec(sigma, k, (0,), strength, SUPPRESS) for k in picked], vocab)
    dense = modulate(logits, batch).argmax(dim=-1)
    assert bool((dense == 1).all())
    assert torch.equal(modulated_argmax(logits, batch), dense)


@pytest.mark.parametrize(("rows", "vocab", "seed"), [(1, 49152, 0), (8, 4096, 1), (32, 2048, 2)])
def test_torch_and_numpy_selection_agree(rows: int, vocab: int, seed: int) -> None:
    """The torch selection (accelerators) finds the same candidates as the NumPy one (CPUs), focus
    targets included, so the accelerator path is checked on a CPU too."""
    logits = _logits(rows, vocab, seed)
    batch = ModulationBatch.build(_specs(rows, vocab, seed), vocab)
    pos = torch.full((rows,), 6, dtype=torch.int32)
    in_torch = greedy._candidates(logits, batch, pos, dense_share=1.0, in_numpy=False)
    in_numpy = greedy._candidates(logits, batch, pos, dense_share=1.0, in_numpy=True)
    assert in_torch is not None and in_numpy is not None
    assert torch.equal(in_torch.pairs, in_numpy.pairs)


def test_a_row_without_a_finite_maximum_takes_the_dense_path() -> None:
    logits = _logits(4, 512, 9)
    logits[1, 7] = float("inf")
    logits[2, 3] = float("nan")
    batch = ModulationBatch.build(
        [RowSpec(0.5, derive_row_key(b"inf", f"t{r}", b"i")) for r in range(4)], 512
    )
    assert torch.equal(modulated_argmax(logits, batch, 1), modulate(logits, batch, 1).argmax(dim=-1))
    with pytest.raises(ValueError, match="not finite"):
        candidates(logits, batch)


def test_a_non_contiguous_step_view_gives_the_dense_winner() -> None:
    """Engines pass the last position of (B, T, V) logits, a strided view: same winners as the dense path."""
    steps = torch.stack([_logits(8, 4096, s) for s in (11, 12, 13)], dim=1)  # (8, 3, 4096)
    logits = steps[:, -1, :]
    assert not logits.is_contiguous()
    batch = ModulationBatch.build(_specs(8, 4096, 11), 4096)
    assert torch.equal(modulated_argmax(logits, batch, 3), modulate(logits, batch, 3).argmax(dim=-1))
