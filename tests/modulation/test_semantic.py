"""Semantic keys: exact N(0, 1) marginals, correlation = share of colliding tables, determinism.

Tolerances: for n i.i.d. N(0, 1) draws the sample variance has sd sqrt(2/n) and a correlation sd 1/sqrt(n);
every bound is >= 5 of those standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from service.modulation import ModulationBatch, RowSpec, modulate
from service.modulation.keys import derive_projection_key, derive_tier_key
from service.modulation.semantic import (
    GENERATION_RESOLUTION,
    Resolution,
    Smoothness,
    bucket_codes,
    component_codes,
    feature_weights,
    prompt_codes,
    sparse_bucket_codes,
)

N = 100_000
PROJECTION = derive_projection_key(b"test-semantic-secret-0123")
FREE = derive_tier_key(b"test-semantic-secret-0123", "free")


def _noise(codes: torch.Tensor, key: tuple[int, int] = FREE) -> torch.Tensor:
    specs = [RowSpec(1.0, key)] * codes.shape[0]
    zeros = torch.zeros(codes.shape[0], N)
    return modulate(zeros, ModulationBatch.build(specs, N, "cpu", codes)).double()


def test_mixture_noise_is_standard_normal_for_a_fixed_input() -> None:
    z = _noise(torch.tensor([[5, -9, 77, 123456]], dtype=torch.int32))[0]
    assert abs(z.mean().item()) < 5 / math.sqrt(N)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / N)


@pytest.mark.parametrize("shared", [0, 1, 2, 3, 4])
def test_draw_correlation_is_the_share_of_colliding_tables(shared: int) -> None:
    a = torch.tensor([1, 2, 3, 4], dtype=torch.int32)
    b = torch.where(torch.arange(4) < shared, a, a + 1000)
    z = _noise(torch.stack((a, b)))
    r = torch.corrcoef(z)[0, 1].item()
    assert abs(r - shared / 4) < 5 / math.sqrt(N), r


def test_tiers_never_share_a_draw() -> None:
    codes = torch.tensor([[1, 2, 3, 4]], dtype=torch.int32)
    secret = b"test-semantic-secret-0123"
    z = torch.cat([_noise(codes, derive_tier_key(secret, t)) for t in ("free", "standard")])
    assert abs(torch.corrcoef(z)[0, 1].item()) < 5 / math.sqrt(N)
    assert derive_tier_key(secret, "free") == FREE  # no tenant, no input: one base key per tier


SMOOTH = Smoothness(components=64, lengthscale=0.25)


def test_random_feature_mixture_is_standard_normal_and_correlates_by_the_weights() -> None:
    g = torch.Generator().manual_seed(3)
    f = torch.nn.functional.normalize(torch.randn(2, 32, generator=g), dim=1)
    f = torch.stack((f[0], torch.nn.functional.normalize(f[0] + 0.3 * f[1], dim=0)))  # distance ~0.3
    w = feature_weights(f, PROJECTION, SMOOTH)
    assert torch.allclose(w.norm(dim=1), torch.ones(2))
    specs = [RowSpec(1.0, FREE)] * 2
    batch = ModulationBatch.build(specs, N, "cpu", component_codes(2, SMOOTH), w)
    z = modulate(torch.zeros(2, N), batch).double()
    assert (z.var(dim=1) - 1).abs().max() < 5 * math.sqrt(2 / N)
    expected = float(w[0] @ w[1])
    assert 0.2 < expected < 0.95  # neither independent nor identical at this distance
    assert abs(torch.corrcoef(z)[0, 1].item() - expected) < 5 / math.sqrt(N)


def test_random_feature_weights_are_smooth_in_the_features() -> None:
    g = torch.Generator().manual_seed(4)
    base = torch.nn.functional.normalize(torch.randn(100, 64, generator=g), dim=1)
    near = torch.nn.functional.normalize(base + 0.004 * torch.randn(100, 64, generator=g), dim=1)  # d ~0.03
    far = torch.nn.functional.normalize(torch.randn(100, 64, generator=g), dim=1)
    w = feature_weights(base, PROJECTION, SMOOTH)
    assert (feature_weights(near, PROJECTION, SMOOTH) * w).sum(1).mean() > 0.97  # exp(-0.03^2 / 0.125)
    assert (feature_weights(far, PROJECTION, SMOOTH) * w).sum(1).abs().mean() < 0.2  # about 1 / sqrt(M)
    # Only directions count, and a row's weights do not depend on its batch (to float rounding).
    assert torch.allclose(feature_weights(base[3:4] * 4.0, PROJECTION, SMOOTH)[0], w[3], atol=1e-6)


def test_codes_are_deterministic_and_independent_of_batch_company() -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(6, 64, generator=g)
    res = Resolution(tables=8, bits=3, width=0.5)
    together = bucket_codes(features, PROJECTION, res)
    assert torch.equal(bucket_codes(features[2:3], PROJECTION, res)[0], together[2])
    assert torch.equal(bucket_codes(features * 7.5, PROJECTION, res), together)  # only directions count
    other = bucket_codes(features, derive_projection_key(b"another-secret-0123456"), res)
    assert (other != together).float().mean() > 0.9  # the buckets depend on the secret


def test_near_features_share_tables_and_far_ones_do_not() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.nn.functional.normalize(torch.randn(200, 64, generator=g), dim=1)
    near = torch.nn.functional.normalize(base + 0.005 * torch.randn(200, 64, generator=g), dim=1)
    far = torch.nn.functional.normalize(torch.randn(200, 64, generator=g), dim=1)
    res = Resolution(tables=16, bits=4, width=1.0)
    codes = bucket_codes(base, PROJECTION, res)
    assert (bucket_codes(near, PROJECTION, res) == codes).float().mean() > 0.8  # distance 0.04
    assert (bucket_codes(far, PROJECTION, res) == codes).float().mean() < 0.1


def test_sparse_codes_equal_dense_codes_and_prompt_codes_use_the_top_probabilities() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 5000, generator=g) * 4
    probs = logits.softmax(-1)
    values, ids = probs.topk(64, dim=-1)
    dense = torch.zeros_like(probs).scatter_(1, ids, values.sqrt())
    expected = bucket_codes(dense, PROJECTION, GENERATION_RESOLUTION)
    assert torch.equal(sparse_bucket_codes(values.sqrt(), ids, PROJECTION, GENERATION_RESOLUTION), expected)
    assert torch.equal(prompt_codes(logits, PROJECTION), expected)
    assert prompt_codes(logits, PROJECTION).shape == (3, GENERATION_RESOLUTION.tables)


def test_premium_rows_stay_bit_identical_with_codes() -> None:
    logits = torch.randn(3, 10)
    codes = torch.tensor([[1, 2], [3, 4], [5, 6]], dtype=torch.int32)
    specs = [RowSpec(0.0, FREE), RowSpec(2.0, FREE), RowSpec(0.0, FREE)]
    out = modulate(logits, ModulationBatch.build(specs, 10, "cpu", codes))
    assert torch.equal(out[0], logits[0]) and torch.equal(out[2], logits[2])
    assert not torch.equal(out[1], logits[1])


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [("tables", {"tables": 0}), ("bits", {"bits": 65}), ("width", {"width": 0.0})],
)
def test_resolution_names_the_bad_setting(field: str, kwargs: dict[str, float]) -> None:
    settings = {"tables": 4, "bits": 2, "width": 1.0, **kwargs}
    with pytest.raises(ValueError, match=f"Resolution.{field}"):
        Resolution(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [("components", 1), ("lengthscale", -1.0)])
def test_smoothness_names_the_bad_setting(field: str, value: float) -> None:
    settings: dict[str, float] = {"components": 8, "lengthscale": 0.5, field: value}
    with pytest.raises(ValueError, match=f"Smoothness.{field}"):
        Smoothness(**settings)  # type: ignore[arg-type]
