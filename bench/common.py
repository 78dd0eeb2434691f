"""Timing helpers shared by the benchmarks: median of repeated runs, results written as JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(fn: Callable[[], object], *, repeats: int = 7, min_time: float = 0.05) -> float:
    """Median wall time of ``fn``: each sample loops enough calls to last ``min_time`` seconds."""
    fn()
    loops, t0 = 1, time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    loops = max(1, int(min_time / once))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - t0) / loops)
    return statistics.median(samples)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "loadavg_1_5_15": list(os.getloadavg()),  # the machine is shared: load at the time of writing
    }


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path


def write_to(
    out: Path, result: dict[str, Any], run: tuple[str, list[str], float, float] | None = None
) -> None:
    """Write ``result`` as JSON to ``out`` (a docs/figures file, say) and print it. With ``run`` = (module,
    argv, perf_counter at the start, 1-minute load at the start), the command line comes first and the
    seconds and the load at the start and the end last."""
    if run is not None:
        module, argv, started, load = run
        result = {
            "command": f"python -m {module} " + " ".join(argv),
            **result,
            "seconds": round(time.perf_counter() - started, 1),
            "load_average_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
