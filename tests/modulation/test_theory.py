"""Every formula of the theory module against simulation or an independent numerical method.

Monte Carlo checks use fixed seeds and a tolerance of 4 standard errors of the simulated estimate;
deterministic checks (finite differences, adaptive quadrature, Genz) state their own tolerances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special
from scipy.stats import multivariate_normal

from service.modulation.theory import (
    expected_accuracy,
    expected_fidelity,
    focus_flip_probability,
    focus_keep_probability,
    focus_top1_probability,
    gauss_hermite,
    order_preservation_exact,
    theorem1_product,
    theorem2_derivative,
    top1_probability,
)

Z = torch.tensor([5.0, 4.0, 3.5, 2.0, 1.0], dtype=torch.float64)  # method.md's example
F64 = torch.float64


def _normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


@pytest.mark.parametrize(
    ("sigma", "paper", "truth"), [(0.7, 0.462, 0.412), (1.0, 0.316, 0.237), (2.0, 0.163, 0.073)]
)
def test_theorem1_overestimates_the_exact_order_preservation(
    sigma: float, paper: float, truth: float
) -> None:
    draws = 400_000
    noisy = Z + sigma * _normal((draws, 5), seed=11)
    simulated = float((noisy.diff(dim=1) < 0).all(dim=1).double().mean())
    product, exact = float(theorem1_product(Z, sigma)), float(order_preservation_exact(Z, sigma))
    se = _se(exact, draws)
    assert product == pytest.approx(paper, abs=5e-4)  # method.md's figures, to their 3 decimals
    assert exact == pytest.approx(truth, abs=1e-3)  # method.md's "true" figures are 400k-draw simulations
    assert abs(simulated - exact) < 4 * se
    assert product - exact > 0.04 and abs(simulated - product) > 40 * se  # the paper's form is wrong here


def test_orthant_probability_matches_genz_and_theorem1_for_two_classes() -> None:
    for c, seed in ((3, 1), (5, 2), (6, 3)):
        z = 1.5 * _normal((c,), seed)
        d = (-z.sort(descending=True).values.diff()).numpy()
        tri = 2 * np.eye(c - 1) - np.eye(c - 1, k=1) - np.eye(c - 1, k=-1)
        for sigma in (0.4, 1.3):
            genz = multivariate_normal(np.zeros(c - 1), sigma**2 * tri, seed=0, abseps=1e-9, releps=1e-9)
            assert float(order_preservation_exact(z, sigma)) == pytest.approx(genz.cdf(d), abs=2e-7)
    pair = torch.tensor([[0.3, -0.4], [2.0, 2.5]], dtype=F64)
    assert torch.allclose(order_preservation_exact(pair, 0.8), theorem1_product(pair, 0.8), atol=1e-10)


def test_orthant_probability_is_vectorised_converged_and_has_the_tie_limit() -> None:
    z = 2 * _normal((4, 7), seed=5)
    rows = order_preservation_exact(z, 1.1)
    assert rows.shape == (4,)
    for i in range(4):
        assert float(rows[i]) == pytest.approx(float(order_preservation_exact(z[i], 1.1)), abs=1e-12)
    fine = order_preservation_exact(z, 1.1, points_per_sigma=256)
    assert torch.allclose(rows, fine, atol=1e-9)
    ties = torch.tensor([[3.0, 1.0, 1.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.5, 0.0]], dtype=F64)
    assert torch.allclose(order_preservation_exact(ties, 0.0), torch.tensor([1 / 6, 1.0], dtype=F64))


def test_theorem2_is_the_derivative_of_theorem1() -> None:
    z = 2 * _normal((6, 9), seed=7)
    for sigma in (0.3, 1.0, 3.0):
        step = 1e-5 * sigma
        numeric = (theorem1_product(z, sigma + step) - theorem1_product(z, sigma - step)) / (2 * step)
        assert torch.allclose(theorem2_derivative(z, sigma), numeric, rtol=1e-6, atol=1e-10)
    per_row = torch.linspace(0.5, 2.0, 6, dtype=F64)
    expected = torch.stack([theorem2_derivative(z[i], float(per_row[i])) for i in range(6)])
    assert torch.allclose(theorem2_derivative(z, per_row), expected, rtol=1e-12)
    assert bool((theorem2_derivative(z, per_row) < 0).all())
    assert float(theorem2_derivative(Z, 0.0)) == 0.0


def test_top1_probability_matches_simulation_and_method_md() -> None:
    exact = float(top1_probability(Z[None], torch.tensor([0]), [1.0])[0, 0])
    assert exact == pytest.approx(0.6901, abs=1e-4)
    draws = 400_000
    simulated = float(((Z + _normal((draws, 5), seed=3)).argmax(dim=1) == 0).double().mean())
    assert abs(simulated - exact) < 4 * _se(exact, draws)


def test_top1_probability_matches_adaptive_quadrature() -> None:
    z = 2 * _normal((5, 30), seed=13)
    target = torch.tensor([int(z[0].argmax()), 0, 1, 2, 3])  # argmax rows and rows the target trails
    sigmas = [0.2, 1.0, 4.0]
    fast = top1_probability(z, target, sigmas)
    assert fast.shape == (3, 5)
    for i, sigma in enumerate(sigmas):
        for n in range(5):
            row = z[n].numpy()
            gaps = (row[int(target[n])] - np.delete(row, int(target[n]))) / sigma

            def integrand(u: float, gaps: np.ndarray = gaps) -> float:
                return math.exp(-u * u / 2 + special.log_ndtr(gaps + u).sum()) / math.sqrt(2 * math.pi)

            reference = integrate.quad(
                integrand, -12, 12, points=[-float(gaps.min())], limit=400, epsabs=1e-14
            )[0]
            assert float(fast[i, n]) == pytest.approx(reference, abs=5e-8)  # 64-node GH: 8e-9 measured


def test_top1_probability_limits_and_shape() -> None:
    z = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 0.0]], dtype=F64)
    at_zero = top1_probability(z, torch.tensor([0, 0]), [0.0])[0]
    assert at_zero.tolist() == [1.0, 0.0]  # σ = 0: the target must be the strict argmax
    huge = top1_probability(z, torch.tensor([0, 2]), [1e5])[0]
    assert torch.allclose(huge, torch.full((2,), 1 / 3, dtype=F64), atol=1e-4)
    curve = top1_probability(z, torch.tensor([0, 0]), torch.linspace(0.05, 5, 40))[:, 0]
    assert bool((curve.diff() < 0).all())
    assert torch.allclose(
        top1_probability(z[:, :1], torch.tensor([0, 0]), [1.0]), torch.ones(1, 2, dtype=F64)
    )


def test_expected_accuracy_and_fidelity_match_sampling() -> None:
    n, c, draws = 400, 10, 500
    z = 2 * _normal((n, c), seed=17)
    labels = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(18))
    z[torch.arange(n), labels] += 2.0
    for sigma, seed in ((0.5, 19), (2.0, 20)):
        predicted = (z + sigma * _normal((draws, n, c), seed)).argmax(dim=-1)
        for exact, reference in (
            (expected_accuracy(z, labels, [sigma]), labels),
            (expected_fidelity(z, [sigma]), z.argmax(dim=1)),
        ):
            rows = (predicted == reference).double().mean(dim=0)
            se = math.sqrt(float((rows * (1 - rows)).mean()) / (n * draws))
            assert abs(float(rows.mean()) - float(exact[0])) < 4 * se


def test_gauss_hermite_integrates_polynomials_against_the_normal() -> None:
    u, w = gauss_hermite()
    full_u, full_w = gauss_hermite(64, min_weight=0.0)
    assert u.shape == w.shape == (38,) and float(w.sum()) == pytest.approx(1.0, abs=1e-13)
    for power, moment in ((2, 1.0), (4, 3.0), (6, 15.0)):
        assert float((full_w * full_u**power).sum()) == pytest.approx(moment, rel=1e-13)
        assert float((w * u**power).sum()) == pytest.approx(moment, rel=2e-10)  # the pruned tails


def test_theorem3_keep_and_flip_probabilities_match_simulation() -> None:
    draws = 400_000
    folded = _normal((draws,), seed=23).abs()
    for d, sigma_f in ((0.5, 1.0), (1.0, 0.8), (2.0, 2.4)):
        keep = float(focus_keep_probability(d, sigma_f))
        assert keep == pytest.approx(2 * special.ndtr(d / sigma_f) - 1, abs=1e-15)
        simulated = float((folded * sigma_f <= d).double().mean())  # z_t + |ε| <= z_r with z_r - z_t = d
        assert abs(simulated - keep) < 4 * _se(keep, draws)
        assert float(focus_flip_probability(d, sigma_f)) == pytest.approx(1 - keep, abs=1e-15)
    assert focus_keep_probability(torch.tensor([0.0, 1.0]), 0.0).tolist() == [1.0, 1.0]
    assert focus_flip_probability(torch.tensor([0.0, 1.0]), 1.0)[0] == 1.0


@pytest.mark.parametrize("sign", [1, -1])
def test_focus_top1_probability_matches_simulation(sign: int) -> None:
    n, c, draws, sigma_f = 300, 6, 2000, 1.2
    z = _normal((n, c), seed=29)
    target = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(30))
    exact = focus_top1_probability(z, target, [0.0, sigma_f], sign=sign)
    assert exact.shape == (2, n)
    assert torch.equal(exact[0], (z.argmax(dim=1) == target).double())
    shift = sign * sigma_f * _normal((draws, n), seed=31).abs()
    noisy = z.expand(draws, n, c).clone()
    noisy[:, torch.arange(n), target] += shift
    rows = (noisy.argmax(dim=-1) == target).double().mean(dim=0)
    assert torch.all((rows - exact[1]).abs() < 4 * torch.sqrt(exact[1] * (1 - exact[1]) / draws) + 1e-12)


def test_bad_arguments_are_rejected_with_the_argument_named() -> None:
    with pytest.raises(ValueError, match="sigma"):
        theorem1_product(Z, -1.0)
    with pytest.raises(ValueError, match="finite"):
        top1_probability(torch.tensor([[0.0, math.nan]]), torch.tensor([0]), [1.0])
    with pytest.raises(ValueError, match="target/labels"):
        top1_probability(Z[None], torch.tensor([5]), [1.0])
    with pytest.raises(ValueError, match="target/labels"):
        expected_accuracy(Z[None], torch.tensor([0.0]), [1.0])
    with pytest.raises(ValueError, match="sigmas"):
        top1_probability(Z[None], torch.tensor([0]), [])
    with pytest.raises(ValueError, match="d "):
        focus_keep_probability(-1.0, 1.0)
    with pytest.raises(ValueError, match="sign"):
        focus_top1_probability(Z[None], torch.tensor([0]), 1.0, sign=0)
    with pytest.raises(ValueError, match="too small"):
        order_preservation_exact(torch.tensor([1e6, 0.0]), 1e-3)
