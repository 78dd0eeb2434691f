"""Smoke run of the HTTP benchmark (bench/http.py) at a small scale, so it cannot rot: every arm
(aimserve and the naive peer, as one process and as two replicas, aimserve's on one shared Redis) starts,
answers every request of the load generator with 200, and the ratios are computed. No speed is asserted."""

from __future__ import annotations

from bench.http import measure
from tests.live import state_dir


def test_http_bench_runs_end_to_end_on_digits(monkeypatch) -> None:
    monkeypatch.setenv("AIM_STATE_DIR", str(state_dir()))
    result = measure("digits", [1, 4], seconds=1.0, profile=None, replicas=2)
    assert result["raw_rows_per_s"]["1"] > 0 and result["raw_rows_per_s"]["32"] > 0
    for target in ("aimserve", "naive", "aimserve_x2", "naive_x2"):
        runs = result[target]
        assert [r["concurrency"] for r in runs] == [1, 4]
        for run in runs:
            assert run["requests"] > 0 and run["errors"] == 0, (target, run)
            assert 0 < run["p50_ms"] <= run["p99_ms"]
    # server CPU is read from /proc on Linux, so its ratios are always present here
    names = ("p50_vs_naive{}", "rps_vs_naive{}", "rps_vs_raw_b32", "cpu_per_request_vs_naive{}")
    assert set(result["ratios"]) == {
        f"c{c}_{prefix}{name.format(peer)}"
        for c in (1, 4)
        for prefix, peer in (("", ""), ("x2_", ""), ("x2_", "_x2"))
        for name in names
    } | {f"c{c}_x2_rps_vs_raw_b32_x2" for c in (1, 4)}
    assert result["raw_rows_per_s"]["32_x2"] > 0  # two one-thread raw loops side by side
    assert all(len(entry["loadavg"]) == 3 for entry in result["load"])
