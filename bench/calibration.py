"""Speed and accuracy of calibration: σ for a target fidelity/accuracy on 10,000 × 1,000 logits.

Synthetic classifier logits: N(0, 2²) per class, the label's logit raised by 5-9. Each case is timed
end to end (building the curve included), median of ``--repeats`` runs; the achieved value is checked
against the exact path (theory.expected_*) on 500 rows. Worst cases: clusters of near-tied classes at a
tiny σ (rows fall back to the exact path) and 500 rows of a 49,152-token vocabulary.

Run: ``OMP_WAIT_POLICY=PASSIVE python -m bench.calibration [--repeats 5]``; writes
bench/results/calibration.json. On a machine whose cores are busy with other work, OpenMP's default
spin-waiting makes every multi-threaded torch op stall (10× slower here); PASSIVE avoids that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.common import write
from service.modulation.calibration import (
    CalibrationResult,
    Top1Curve,
    sigma_for_accuracy,
    sigma_for_fidelity,
)
from service.modulation.theory import top1_probability


def realistic(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, c, generator=gen)
    labels = torch.randint(0, c, (n,), generator=gen)
    logits[torch.arange(n), labels] += 5 + 4 * torch.rand(n, generator=gen)
    return logits, labels


def near_ties(n: int, c: int, seed: int) -> torch.Tensor:
    """64 classes within 0.05 of each other at the top of every row: the grid cannot resolve tiny σ."""
    gen = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, c, generator=gen)
    logits[:, :64] = 8 + 0.05 * torch.rand(n, 64, generator=gen)
    return logits


def timed(
    solve: Callable[[], CalibrationResult], repeats: int
) -> tuple[CalibrationResult, list[float], list[float]]:
    """The result, wall seconds and CPU seconds (all threads of this process) of ``repeats`` runs."""
    runs, cpu, result = [], [], solve()
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = solve()
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return result, runs, cpu


def case(
    name: str, logits: torch.Tensor, labels: torch.Tensor | None, target: float, repeats: int
) -> dict[str, Any]:
    if labels is None:
        result, runs, cpu = timed(lambda: sigma_for_fidelity(logits, target), repeats)
        check = logits.argmax(dim=1)
    else:
        result, runs, cpu = timed(lambda: sigma_for_accuracy(logits, labels, target), repeats)
        check = labels
    rows = torch.linspace(0, logits.shape[0] - 1, 500).long()
    exact = float(top1_probability(logits[rows], check[rows], [result.sigma]).mean())
    curve = Top1Curve(logits[rows], None if labels is None else labels[rows])
    fast = float(curve.expected([result.sigma])[0])
    return {
        "case": name,
        "rows": result.rows,
        "classes": result.classes,
        "metric": result.metric,
        "target": target,
        "sigma": result.sigma,
        "achieved": result.achieved,
        "full_evaluations": result.evaluations,
        "sample_evaluations": result.sample_evaluations,
        "seconds_median": statistics.median(runs),
        "seconds_max": max(runs),
        "cpu_seconds_median": statistics.median(cpu),
        "exact_minus_fast_on_500_rows": exact - fast,
    }


def build_seconds(logits: torch.Tensor, repeats: int) -> float:
    Top1Curve(logits)
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        Top1Curve(logits)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def by_threads(logits: torch.Tensor, repeats: int) -> dict[str, dict[str, float]]:
    """The 0.9-fidelity solve with 1 and 2 torch threads: median wall and CPU seconds. With one thread
    the CPU time is what the solve costs on one otherwise idle core."""
    threads, out = torch.get_num_threads(), {}
    for count in (1, 2):
        torch.set_num_threads(count)
        _, runs, cpu = timed(lambda: sigma_for_fidelity(logits, 0.9), repeats)
        out[f"{count}_threads"] = {"seconds": statistics.median(runs), "cpu_seconds": statistics.median(cpu)}
    torch.set_num_threads(threads)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    load = [round(os.getloadavg()[0], 2)]
    logits, labels = realistic(10_000, 1_000, seed=0)
    print(f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY')}")
    cases = [case("realistic", logits, None, t, args.repeats) for t in (0.99, 0.95, 0.9, 0.8, 0.5)]
    cases += [case("realistic", logits, labels, t, args.repeats) for t in (0.5, 0.3, 0.1)]
    cases.append(case("near-ties", near_ties(10_000, 1_000, seed=1), None, 0.9, 2))
    vocab, _ = realistic(500, 49_152, seed=2)
    cases.append(case("vocabulary", vocab, None, 0.9, 2))
    payload: dict[str, Any] = {
        "what": "end-to-end sigma_for_fidelity / sigma_for_accuracy (curve build included)",
        "load_average_1min_at_start_and_end": load,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "build_seconds_10000x1000": build_seconds(logits, args.repeats),
        "cases": cases,
        "fidelity_0.9_seconds_by_torch_threads": by_threads(logits, args.repeats),
    }
    load.append(round(os.getloadavg()[0], 2))
    path = write("calibration", payload)
    for row in cases:
        print(
            f"{row['case']:>10} {row['metric']:>8} {row['rows']}x{row['classes']} target {row['target']}: "
            f"sigma {row['sigma']:.5f} achieved {row['achieved']:.7f} "
            f"{row['seconds_median'] * 1000:.0f} ms wall, {row['cpu_seconds_median'] * 1000:.0f} ms CPU "
            f"({row['full_evaluations']} full evaluations)"
        )
    print(f"by threads: {payload['fidelity_0.9_seconds_by_torch_threads']}; load {load}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
