"""The modulators: layouts, per-row settings, identity at sigma 0, purity, keyed determinism, statistics.

Statistical bounds: n noisy values per row, bounds >= 5 standard errors (see test_noise).
"""

from __future__ import annotations

import math

import pytest
import torch

from service.modulation import (
    BOOST,
    SUPPRESS,
    ModulationBatch,
    RowSpec,
    focus_modulation,
    modulate,
    utility_modulation,
)

V = 50_000


def _batch(rows: list[RowSpec], classes: int) -> ModulationBatch:
    return ModulationBatch.build(rows, classes)


def test_every_row_gets_its_own_sigma() -> None:
    sigmas = [0.0, 0.5, 1.0, 3.0]
    rows = [RowSpec(s, (i + 1, 7)) for i, s in enumerate(sigmas)]
    logits = torch.zeros(len(rows), V)
    out = utility_modulation(logits, _batch(rows, V))
    for row, s in zip(out.double(), sigmas, strict=True):
        if s == 0:
            assert torch.equal(row, torch.zeros(V, dtype=torch.float64))
        else:
            assert abs(row.std().item() / s - 1) < 5 * math.sqrt(1 / (2 * V))
            assert abs(row.mean().item()) < 5 * s / math.sqrt(V)


def test_mixed_batch_premium_rows_bit_identical_and_input_untouched() -> None:
    logits = torch.randn(6, 1000, generator=torch.Generator().manual_seed(0))
    before = logits.clone()
    rows = [RowSpec(0.0 if i % 2 else 2.0, (i, i)) for i in range(6)]
    out = modulate(logits, _batch(rows, 1000))
    assert torch.equal(logits, before)
    assert out.data_ptr() != logits.data_ptr()
    for i in range(6):
        same = torch.equal(out[i], logits[i])
        assert same == bool(i % 2)


def test_all_identity_batch_returns_logits_unchanged() -> None:
    logits = torch.randn(3, 10)
    out = modulate(logits, _batch([RowSpec(0.0, (1, 1))] * 3, 10))
    assert torch.equal(out, logits)


def test_keyed_determinism_and_independence_of_batch_company() -> None:
    logits = torch.randn(4, 300)
    rows = [RowSpec(1.0, (i, 99)) for i in range(4)]
    full = modulate(logits, _batch(rows, 300))
    assert torch.equal(full, modulate(logits, _batch(rows, 300)))
    alone = modulate(logits[2:3], _batch(rows[2:3], 300))
    assert torch.equal(alone[0], full[2])
    mixed = modulate(logits, _batch([RowSpec(0.0, (0, 99)), *rows[1:]], 300))
    assert torch.equal(mixed[2], full[2])


def test_rows_with_different_keys_are_independent() -> None:
    rows = [RowSpec(1.0, (i, 3)) for i in range(5)]
    noise = modulate(torch.zeros(5, V), _batch(rows, V)).double()
    off = torch.corrcoef(noise)[~torch.eye(5, dtype=torch.bool)]
    assert off.abs().max() < 5 / math.sqrt(V)


def test_positions_change_the_noise_but_stay_deterministic() -> None:
    rows = [RowSpec(1.0, (5, 6))] * 2
    z = torch.zeros(2, V)
    b = _batch(rows, V)
    step0, step1 = modulate(z, b, position=0), modulate(z, b, position=1)
    per_row = modulate(z, b, position=torch.tensor([0, 1]))
    assert torch.equal(per_row[0], step0[0]) and torch.equal(per_row[1], step1[1])
    r = torch.corrcoef(torch.stack((step0[0], step1[0])).double())[0, 1]
    assert abs(r) < 5 / math.sqrt(V)


@pytest.mark.parametrize("direction", [BOOST, SUPPRESS])
def test_focus_is_folded_normal_on_targets_only(direction: int) -> None:
    classes, targets, strength = 20, (3, 11), 1.5
    rows = [RowSpec(0.0, (i, 1), targets, strength, direction) for i in range(V // 10)]
    logits = torch.randn(len(rows), classes)
    delta = (focus_modulation(logits, _batch(rows, classes)) - logits).double()
    others = [c for c in range(classes) if c not in targets]
    assert torch.count_nonzero(delta[:, others]) == 0
    hits = delta[:, list(targets)].flatten() * direction
    assert (hits >= 0).all()
    n, mean = hits.numel(), strength * math.sqrt(2 / math.pi)
    sd = strength * math.sqrt(1 - 2 / math.pi)
    assert abs(hits.mean().item() - mean) < 5 * sd / math.sqrt(n)


def test_focus_and_utility_compose_in_one_call() -> None:
    rows = [RowSpec(1.0, (9, 9), (0,), 2.0, BOOST)]
    z = torch.zeros(1, 8)
    b = _batch(rows, 8)
    both = modulate(z, b)
    utility_only = utility_modulation(z, b)
    focus_only = focus_modulation(z, b)
    assert torch.allclose(both, utility_only + focus_only)


def test_segmentation_layout_noise_per_pixel_and_focus_on_class_planes() -> None:
    rows = [RowSpec(1.0, (1, 2)), RowSpec(0.0, (3, 4), (2,), 1.0, BOOST)]
    logits = torch.randn(2, 4, 32, 32)
    out = modulate(logits, _batch(rows, 4))
    planes = (out - logits)[0].flatten(1).double()  # (C, H*W): one draw per pixel and class
    off = torch.corrcoef(planes)[~torch.eye(4, dtype=torch.bool)]
    assert off.abs().max() < 5 / 32  # 1024 pixels per plane
    assert (planes.std(dim=1) - 1).abs().max() < 5 * math.sqrt(2 / 1024)
    focus_delta = out[1] - logits[1]
    assert torch.count_nonzero(focus_delta[[0, 1, 3]]) == 0
    assert (focus_delta[2] > 0).float().mean() > 0.99


def test_low_precision_and_non_contiguous_inputs() -> None:
    base = torch.randn(10, 4)
    logits = base.t().to(torch.bfloat16)  # (4, 10), non-contiguous
    rows = [RowSpec(0.0, (1, 1)), RowSpec(1.0, (2, 2)), RowSpec(0.0, (3, 3)), RowSpec(0.0, (4, 4))]
    out = modulate(logits, _batch(rows, 10))
    assert out.dtype == torch.float32 and out.shape == (4, 10)
    assert torch.equal(out[0], logits[0].float())
    assert not torch.equal(out[1], logits[1].float())


def test_build_checks_focus_ids_against_classes() -> None:
    with pytest.raises(ValueError, match="out of range"):
        ModulationBatch.build([RowSpec(0.0, (1, 1), (10,), 1.0)], 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": math.nan}, "sigma"),
        ({"focus_strength": -0.1}, "focus_strength"),
        ({"focus_sign": 2}, "focus_sign"),
        ({"focus_ids": (1, 1)}, "focus_ids"),
        ({"key": (2**32, 0)}, "key"),
    ],
)
def test_row_spec_rejects_bad_settings_naming_them(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"sigma": 0.0, "key": (1, 2)}
    with pytest.raises(ValueError, match=message):
        RowSpec(**{**base, **kwargs})  # type: ignore[arg-type]
