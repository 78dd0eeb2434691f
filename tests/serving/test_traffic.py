"""The traffic sample: bounded per tenant and per tier, and no tenant steers a tier's σ beyond its share."""

from __future__ import annotations

import pytest
import torch

from service.modulation.calibration import Top1Curve, solve_sigma
from service.serving.traffic import GENERATION_TOP, TrafficSample, generation_sample, share_cap


def _logits(n: int, scale: float, seed: int) -> torch.Tensor:
    """(n, 3) logits, class 0 ahead by ``scale``, spread ``scale`` (small: near-ties, easily flipped)."""
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, 3, generator=g)
    z[:, 0] += scale
    return z


def test_rows_are_copied_and_bounded_per_tenant_and_per_tier() -> None:
    sample = TrafficSample(per_tenant=5, max_tenants=2)
    z = torch.zeros(8, 3)
    sample.add("free", "a", z)
    z += 1.0  # the sample kept its own copy
    sample.add("free", "b", torch.ones(2, 3))
    sample.add("free", "c", torch.ones(1, 3))  # a third tenant evicts the least recently seen (a)
    assert sample.counts("free") == {"b": 2, "c": 1}
    sample.add("free", "b", torch.full((4, 3), 7.0))
    assert sample.counts("free") == {"c": 1, "b": 5}  # b's ring keeps its 5 most recent rows
    assert sample.counts("premium") == {}
    one = TrafficSample()
    one.add("free", "a", torch.zeros(8, 3))
    rows, tenants = one.sample("free")
    assert tenants == 1 and torch.equal(rows, torch.zeros(8, 3))


@pytest.mark.parametrize(
    ("counts", "share", "cap"),
    [([10, 10, 10, 10], 0.25, 10), ([1000, 10, 10, 10], 0.25, 10), ([1000, 100, 100, 100], 0.5, 300)],
)
def test_share_cap_is_the_largest_cap_keeping_every_tenant_within_its_share(
    counts: list[int], share: float, cap: int
) -> None:
    assert share_cap(counts, share) == cap
    total = sum(min(c, cap) for c in counts)
    assert all(min(c, cap) <= share * total for c in counts)
    assert (cap + 1) > share * sum(min(c, cap + 1) for c in counts)


def test_a_flooding_tenant_cannot_steer_the_tiers_sigma() -> None:
    """Ten honest tenants send 100 ordinary rows each; an attacker floods 2,000 near-ties, which pull σ down
    (less noise for the whole tier). With its share capped at s = 0.1, the σ solved for target F on the
    mix gives the honest traffic F_h = (F - s F_a) / (1 - s), F_a in [1/C, 1]: at most
    s (F - 1/C) / (1 - s) = 4.1 points above the target here; uncapped, the honest traffic gets far more."""
    sample = TrafficSample(per_tenant=2000)
    for t in range(10):
        sample.add("free", f"honest{t}", _logits(100, 2.0, seed=t))
    honest = Top1Curve(sample.sample("free")[0])
    sample.add("free", "attacker", _logits(2000, 0.05, seed=99))
    rows, tenants = sample.sample("free", max_share=0.1)
    assert tenants == 11 and len(rows) - 1000 <= 0.1 * len(rows)  # the attacker holds at most a tenth
    capped = solve_sigma(Top1Curve(rows), 0.7).sigma
    uncapped = solve_sigma(Top1Curve(sample.sample("free", max_share=1.0)[0]), 0.7).sigma
    bound = 0.1 * (0.7 - 1 / 3) / 0.9
    assert 0.7 <= honest.mean(capped) <= 0.7 + bound + 0.005
    assert honest.mean(uncapped) > 0.9


def test_bad_settings_name_themselves() -> None:
    with pytest.raises(ValueError, match="per_tenant=0"):
        TrafficSample(per_tenant=0)
    with pytest.raises(ValueError, match="max_share=0"):
        TrafficSample().sample("free", max_share=0.0)
    assert TrafficSample().sample("free")[1] == 0


def test_generation_samples_every_second_of_the_first_32_steps_as_their_top_logits() -> None:
    clean = torch.randn(5, 1000, generator=torch.Generator().manual_seed(3))
    positions = [0, 1, 30, 31, 32]
    picked, top = generation_sample(positions, clean)
    assert picked == [0, 2] and top is not None
    assert top.shape == (2, GENERATION_TOP) and top.dtype == torch.float32
    expect = clean[[0, 2]].topk(GENERATION_TOP).values
    assert torch.equal(top.sort(-1, descending=True).values, expect)
    assert generation_sample([1, 3, 33], clean[:3]) == ([], None)
    sample = TrafficSample()
    sample.add("free", "a", top)
    assert torch.equal(sample.tenant_rows("free", "a"), top)
    assert sample.tenant_rows("free", "b").shape == (0, 0) == sample.tenant_rows("gold", "a").shape


def test_rows_keep_their_served_noise_and_a_row_without_it_drops_the_samples() -> None:
    sample = TrafficSample()
    logits, noise = _logits(6, 1.0, seed=3), _logits(6, 1.0, seed=4)
    sample.add("free", "a", logits[:4], noise[:4])
    sample.add("free", "b", logits[4:], noise[4:])
    rows, draws, tenants = sample.sample_with_noise("free", max_share=1.0)
    assert tenants == 2 and torch.equal(rows, logits) and draws is not None and torch.equal(draws, noise)
    sample.add("free", "c", logits[:1])  # a focus tenant's row: no separable unit noise
    rows, draws, _ = sample.sample_with_noise("free", max_share=1.0)
    assert len(rows) == 7 and draws is None
