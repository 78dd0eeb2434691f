"""Served fidelity on fixed draws: flip points are exact, and the solver's rule holds on every step.

Synthetic seeded logits and unit noise stand in for a deployment's draws; the check is against the argmax of
``logits + σ·noise`` computed directly, so nothing here trusts the flip-point algebra it tests.
"""

from __future__ import annotations

import math

import pytest
import torch

from service.modulation.served import flip_sigmas, served_fidelity, solve_served_sigma


def _draws(rows: int = 3000, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, classes, generator=g) * 2.0, torch.randn(rows, classes, generator=g)


def _direct(logits: torch.Tensor, noise: torch.Tensor, sigma: float) -> float:
    clean = logits.double().argmax(-1)
    return float(((logits.double() + sigma * noise.double()).argmax(-1) == clean).double().mean())


def test_flip_points_give_the_served_fidelity_at_every_sigma() -> None:
    logits, noise = _draws()
    flips = flip_sigmas(logits, noise)
    assert flips.shape == (3000,) and bool((flips >= 0).all())
    for sigma in torch.linspace(0.0, 12.0, 61).tolist():
        assert served_fidelity(flips, sigma) == _direct(logits, noise, sigma)
    # a row whose own draw favours its top class most never flips
    never = noise.argmax(-1) == logits.argmax(-1)
    assert bool(torch.isinf(flips[never]).all()) and bool(torch.isfinite(flips[~never]).all())
    assert served_fidelity(flips, 1e9) == pytest.approx(float(never.double().mean()))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("target", [0.5, 0.7, 0.9])
def test_the_solved_sigma_is_the_smallest_whose_served_fidelity_is_at_most_the_target(
    seed: int, target: float
) -> None:
    logits, noise = _draws(seed=seed)
    solution = solve_served_sigma(flip_sigmas(logits, noise), target)
    served = _direct(logits, noise, solution.sigma)
    rows = logits.shape[0]
    # on the largest step value at most the target: within one row of it
    assert served == solution.achieved and target - 1 / rows <= served <= target
    low, high = solution.step
    assert low < solution.sigma < high
    assert _direct(logits, noise, low * (1 - 1e-6)) > target  # just below the step: above the target


def test_targets_the_draws_cannot_reach_are_refused() -> None:
    logits, _ = _draws(rows=100, classes=3)
    favoured = torch.nn.functional.one_hot(logits.argmax(-1), 3).float()  # every draw favours the top class
    with pytest.raises(ValueError, match="100 of 100 calibration rows are served faithfully at every sigma"):
        solve_served_sigma(flip_sigmas(logits, favoured), 0.7)
    flips = flip_sigmas(*_draws(rows=10))
    for bad in (0.0, 1.0, -0.5, math.nan, True):
        with pytest.raises(ValueError, match="target fidelity must be a number in"):
            solve_served_sigma(flips, bad)
    with pytest.raises(ValueError, match="must both be"):
        flip_sigmas(logits, favoured[:, :2])
