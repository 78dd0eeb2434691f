"""Re-solving σ from a traffic sample: on the draws served when the rows carry them, else independent draws.

Synthetic seeded rows (no service): the keyed solve must put the sample's own served fidelity, recomputed
here from ``logits + σ·noise``, at the largest step value at most the target (within one row of it).
"""

from __future__ import annotations

import pytest
import torch

from service.api.recalibrate import solve_from_traffic
from service.errors import BadInput
from service.modulation.calibration import Top1Curve
from service.serving.traffic import TrafficSample


def _traffic(with_noise: bool) -> tuple[TrafficSample, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    logits, noise = 2.0 * torch.randn(600, 3, generator=g), torch.randn(600, 3, generator=g)
    sample = TrafficSample()
    for t in range(6):
        rows = slice(100 * t, 100 * (t + 1))
        sample.add("free", f"t{t}", logits[rows], noise[rows] if with_noise else None)
    return sample, logits, noise


def test_rows_with_their_served_noise_are_solved_on_those_draws() -> None:
    sample, logits, noise = _traffic(with_noise=True)
    sigma, before, after, rows, tenants, draws = solve_from_traffic(sample, "free", 0.7, 0.5, 1.0)
    served = float(((logits + sigma * noise).argmax(-1) == logits.argmax(-1)).double().mean())
    assert (rows, tenants, draws) == (600, 6, "keyed")
    assert served == after and 0.7 - 1 / 600 <= after <= 0.7
    assert before == float(((logits + 0.5 * noise).argmax(-1) == logits.argmax(-1)).double().mean())


def test_rows_without_noise_are_solved_for_independent_draws() -> None:
    sample, logits, _ = _traffic(with_noise=False)
    sigma, _, after, _, _, draws = solve_from_traffic(sample, "free", 0.7, 0.5, 1.0)
    assert draws == "independent" and Top1Curve(logits).mean(sigma) == pytest.approx(0.7, abs=1e-6)
    assert after == pytest.approx(0.7, abs=1e-6)
    with pytest.raises(BadInput, match="at least 250"):
        solve_from_traffic(TrafficSample(), "free", 0.7, 0.5, 1.0)
