"""A real σ-for-fidelity solver for the tier tests: bisection on fixed, seeded logits and noise.

fidelity(σ) = share of rows whose top-1 under ``logits + σ·noise`` equals the top-1 of ``logits``;
it decreases with σ, so bisection finds the σ for a target. It also records every target it was asked. The
tier name (`SigmaSolver`'s first argument) does not change the fixed noise here.
"""

from __future__ import annotations

import numpy as np


class BisectionSolver:
    def __init__(self, rows: int = 2000, classes: int = 10, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.logits = rng.normal(0.0, 2.0, (rows, classes))
        self.noise = rng.standard_normal((rows, classes))
        self.calls: list[float] = []

    def fidelity(self, sigma: float) -> float:
        clean = self.logits.argmax(axis=1)
        noisy = (self.logits + sigma * self.noise).argmax(axis=1)
        return float((clean == noisy).mean())

    def __call__(self, _tier: str, target: float) -> float:
        self.calls.append(target)
        lo, hi = 0.0, 100.0
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.fidelity(mid) >= target else (lo, mid)
        return lo
