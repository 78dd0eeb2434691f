"""The fast curve against the exact path, its error bound, and calibration on held-out data.

Synthetic "realistic" logits: N(0, 2²) per class, the label's logit raised by 5-9 (a trained classifier's
margin). Monte Carlo checks use fixed seeds and 4 standard errors; exact checks state their tolerances.
"""

from __future__ import annotations

import math

import pytest
import torch

from service.modulation.calibration import Top1Curve, sigma_for_accuracy, sigma_for_fidelity, solve_sigma
from service.modulation.theory import expected_accuracy, expected_fidelity, top1_probability


def _realistic(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, c, generator=gen)
    labels = torch.randint(0, c, (n,), generator=gen)
    logits[torch.arange(n), labels] += 5 + 4 * torch.rand(n, generator=gen)
    return logits, labels


@pytest.fixture(scope="module")
def thousand_classes() -> tuple[torch.Tensor, torch.Tensor]:
    return _realistic(300, 1000, seed=1)


@pytest.mark.parametrize("mode", ["fidelity", "accuracy"])
def test_fast_curve_is_within_its_bound_of_the_exact_path(thousand_classes, mode: str) -> None:
    logits, labels = thousand_classes
    target = logits.argmax(dim=1) if mode == "fidelity" else labels
    curve = Top1Curve(logits, None if mode == "fidelity" else labels)
    for sigma in (0.03, 0.2, 0.7, 2.0, 6.0):
        exact = top1_probability(logits, target, [sigma])[0]
        fast = curve.probabilities(sigma, fallback=False)
        bound = curve.error_bound(sigma)
        assert bool(((fast - exact).abs() <= bound + 1e-13).all())
        assert float((curve.probabilities(sigma) - exact).abs().max()) <= curve.row_tol + 1e-13


def test_rows_beyond_the_bound_fall_back_to_the_exact_path() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(40, 200, generator=gen, dtype=torch.float64)
    logits[:, :60] = 3.0 + 0.05 * torch.rand(40, 60, generator=gen, dtype=torch.float64)  # 60 near-ties
    logits[:, 0] += 0.01
    curve = Top1Curve(logits, torch.zeros(40, dtype=torch.long), spacing=0.05)
    sigma = 0.01  # far below the grid spacing: the gridded near-ties are badly resolved
    assert int((curve.error_bound(sigma) > curve.row_tol).sum()) >= 30
    exact = top1_probability(logits, torch.zeros(40, dtype=torch.long), [sigma])[0]
    assert float((curve.probabilities(sigma) - exact).abs().max()) <= curve.row_tol


def test_curve_limits_ties_and_monotonicity() -> None:
    logits = torch.tensor([[2.0, 2.0, 0.0], [3.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    curve = Top1Curve(logits)
    assert curve.limit_at_zero() == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    assert curve.expected([1e-6])[0] == pytest.approx(curve.limit_at_zero(), abs=1e-12)
    assert curve.expected([1e6])[0] == pytest.approx(1 / 3, abs=1e-5)
    logits, _ = _realistic(500, 100, seed=3)
    values = Top1Curve(logits).expected(torch.logspace(-2, 1.5, 30))
    assert bool((values.diff() < 0).all())


def test_fidelity_calibration_hits_the_target_on_held_out_data() -> None:
    # Two i.i.d. halves of 25,000 rows: per-row P varies with sd ≈ 0.25, so the held-out fidelity at the
    # fitted σ differs from the target by sampling alone with sd ≈ 0.25·sqrt(2/25,000) = 0.0022; 1 point
    # is 4.5 of those. The simulated check draws 4 noise vectors per held-out row.
    logits, _ = _realistic(50_000, 100, seed=4)
    fit, held_out = logits[:25_000], logits[25_000:]
    held_out_curve = Top1Curve(held_out)  # exact within 1e-7 per row (see the tests above)
    for target, seed in ((0.9, 5), (0.7, 6), (0.5, 7)):
        result = sigma_for_fidelity(fit, target)
        assert result.achieved == pytest.approx(target, abs=1e-6)
        assert float(expected_fidelity(fit[:2000], [result.sigma])[0]) == pytest.approx(
            float(Top1Curve(fit[:2000]).expected([result.sigma])[0]), abs=1e-7
        )
        exact = held_out_curve.mean(result.sigma)
        assert abs(exact - target) < 0.01
        noise = result.sigma * torch.randn(4, *held_out.shape, generator=torch.Generator().manual_seed(seed))
        agree = ((held_out + noise).argmax(dim=-1) == held_out.argmax(dim=1)).double()
        se = math.sqrt(exact * (1 - exact) / agree.numel())  # draws are independent given the logits
        assert abs(float(agree.mean()) - exact) < 4 * se


def test_accuracy_calibration_hits_the_target_on_held_out_data() -> None:
    logits, labels = _realistic(50_000, 100, seed=8)
    for target in (0.7, 0.4):
        result = sigma_for_accuracy(logits[:25_000], labels[:25_000], target)
        assert result.metric == "accuracy" and result.achieved == pytest.approx(target, abs=1e-6)
        held_out = Top1Curve(logits[25_000:], labels[25_000:]).mean(result.sigma)
        assert abs(held_out - target) < 0.01
        assert float(expected_accuracy(logits[:1000], labels[:1000], [result.sigma])[0]) == pytest.approx(
            Top1Curve(logits[:1000], labels[:1000]).mean(result.sigma), abs=1e-7
        )


def test_calibration_is_reproducible_and_order_free() -> None:
    logits, _ = _realistic(3000, 300, seed=7)
    first, second = sigma_for_fidelity(logits, 0.8), sigma_for_fidelity(logits.clone(), 0.8)
    assert first.sigma == second.sigma and first.achieved == second.achieved
    shuffled = sigma_for_fidelity(
        logits[torch.randperm(3000, generator=torch.Generator().manual_seed(8))], 0.8
    )
    assert shuffled.sigma == pytest.approx(first.sigma, rel=1e-5)
    curve = Top1Curve(logits)
    sigmas = [solve_sigma(curve, t).sigma for t in (0.95, 0.8, 0.6, 0.4)]
    assert sigmas == sorted(sigmas) and sigmas[0] > 0


def test_unreachable_targets_are_rejected_with_the_target_named() -> None:
    logits, labels = _realistic(200, 50, seed=9)
    assert sigma_for_fidelity(logits, 1.0).sigma == 0.0  # the unmodulated model is its own target
    tied = torch.tensor([[1.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    assert sigma_for_fidelity(tied, 1.0).sigma == 0.0  # ties: only σ = 0 reproduces every output
    with pytest.raises(ValueError, match=r"target fidelity 0\.9 is above 0\.75"):
        sigma_for_fidelity(tied, 0.9)
    with pytest.raises(ValueError, match=r"target fidelity 0\.01 .*chance level"):
        sigma_for_fidelity(logits, 0.01)
    clean = float((logits.argmax(dim=1) == labels).double().mean())
    with pytest.raises(ValueError, match=r"above 0\.\d+, the accuracy of the calibration set"):
        sigma_for_accuracy(logits, labels, min(1.0, clean + 0.05))
    with pytest.raises(ValueError, match="target fidelity must be a number"):
        sigma_for_fidelity(logits, math.nan)
    with pytest.raises(ValueError, match="target/labels"):
        sigma_for_accuracy(logits, labels[:10], 0.5)
    with pytest.raises(ValueError, match="finite"):
        sigma_for_fidelity(torch.full((3, 4), math.inf), 0.5)
    with pytest.raises(ValueError, match="2 classes"):
        sigma_for_fidelity(torch.zeros(3, 1), 0.5)
