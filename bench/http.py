"""aimserve through real HTTP, against the naive peer and the raw batched forward, in one run.

For each classifier preset (``minilm-sentiment``: the forward dominates; ``digits``: the HTTP stack does):
- raw: the model's batched forward loop in this process (batch 1 and batch 32, prepared inputs) and, with
  replicas, N batch-32 loops side by side in N processes with the replicas' threads (their baseline);
- aimserve: ``aimserve serve`` in its own process (embedded Redis, a rate-limited tier with σ = 1, so every
  request pays the key lookup, the rate limit, keyed modulation and its request record);
- naive: `bench.naive_peer` (FastAPI + transformers, one forward per request), in its own process;
- with ``--replicas N`` (default 2), both again as N processes with cores / N torch threads each, the
  aimserve replicas on one shared embedded Redis, and the load's connections spread over them: the
  deployment that ships (one replica per CPU, deploy/k8s) and the peer given the same cores.
Every arm gets the same closed-loop load (`bench.loadgen`: c = 1, 8, 32 keep-alive connections, one
held-out input per request, bounded in time). Targets, as ratios of this run: c = 1 p50 <= 1.1x naive;
c = 32 sentiment >= 0.9x the raw batch-32 forward; c = 32 digits >= 3x naive.

Run: ``python -m bench.http [--seconds S] [--concurrency 1,8,32] [--replicas N] [--profile DIR] [preset]``;
writes bench/results/http.json with the machine's load average before and after each measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import write
from bench.loadgen import drive_spread, encode_posts
from bench.processes import Server, free_port, new_tenant, spawn, stop, wait_listening
from bench.profile import summarize
from service.models import held_out, load_model
from service.presets import resolve_model_path
from service.store import EmbeddedRedis

ADMIN = "bench-admin-token-0123456789"
TIERS = (
    "default_tier: bench\ntiers:\n  bench:\n    sigma: 1.0\n    rate_limit: {requests_per_minute: 10000000}\n"
)


def bodies(folder: Path, n: int = 256) -> tuple[list[Any], list[dict[str, Any]]]:
    """Held-out inputs (raw) and the ``/v1/classify`` body of each, one input per request."""
    data = held_out(folder)
    raw = list(data.inputs)[:n]
    if data.kind == "text":
        return raw, [{"inputs": [t]} for t in raw]
    return raw, [{"inputs": [{"image": base64.b64encode(b).decode()}]} for b in raw]


def raw_forward(
    folder: Path, raw: Sequence[Any], batch: int, seconds: float, ready: Callable[[], None] | None = None
) -> float:
    """Rows per second of the bare batched forward loop (inputs prepared beforehand); ``ready`` is called
    after loading, before the loop (loops in several processes start together)."""
    model = load_model(folder)
    items = [model.prepare(r) for r in raw]
    model.forward(items[:batch])
    if ready is not None:
        ready()
    rows, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, len(items) - batch + 1, batch):
            model.forward(items[i : i + batch]).argmax(-1).tolist()
            rows += batch
    return rows / (time.perf_counter() - start)


_RAW_CHILD = (
    "import sys; from pathlib import Path; from bench.http import bodies, raw_forward\n"
    "f = Path(sys.argv[1])\n"
    "def ready(): print('ready', flush=True); sys.stdin.readline()\n"
    "print(raw_forward(f, bodies(f)[0], 32, float(sys.argv[2]), ready))"
)


def threads_for(processes: int) -> dict[str, str]:
    """The environment giving each of ``processes`` processes its share of the cores as torch threads."""
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))}


def raw_forward_processes(folder: Path, processes: int, seconds: float) -> float:
    """Rows per second of ``processes`` batch-32 raw loops side by side, one process and cores / N torch
    threads each: the raw forward arranged as the replicas are, their fair baseline."""
    cmd = [sys.executable, "-c", _RAW_CHILD, str(folder), str(seconds)]
    env = os.environ | threads_for(processes)
    children = [
        subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    for child in children:  # every model loaded ...
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:  # ... then all loops start
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    return sum(float(child.communicate()[0].split()[-1]) for child in children)


@contextmanager
def profiled(pid: int, out: Path | None, name: str, seconds: float) -> Iterator[None]:
    """``py-spy record`` of ``pid`` while the block runs (raw collapsed stacks in ``out/name.txt``)."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [spy, "record", "-p", str(pid), "-d", str(int(seconds) + 1), "-r", "200", "-f", "raw"]
    proc = subprocess.Popen([*cmd, "-o", str(out / f"{name}.txt")], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.wait(timeout=seconds + 30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all threads (Linux ``/proc``; 0 elsewhere).

    CPU per answered request is what a loaded machine distorts least: wall times stretch with the
    other processes' load, the work a request costs much less."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(tag: str) -> dict[str, Any]:
    return {"when": tag, "loadavg": [round(x, 2) for x in os.getloadavg()]}


@dataclass
class Arm:
    """One way of serving: its server processes and each one's pre-encoded requests."""

    servers: list[Server]
    requests: list[list[bytes]] = field(default_factory=list)

    @property
    def targets(self) -> list[tuple[int, list[bytes]]]:
        return [(s.port, r) for s, r in zip(self.servers, self.requests, strict=True)]

    def cpu(self) -> float:
        return sum(cpu_seconds(s.pid) for s in self.servers)


def _start_arms(folder: Path, tmp: Path, replicas: int, redis_url: str | None) -> dict[str, Arm]:
    """aimserve and the naive peer as shipped (one process, torch's default threads) and, for
    ``replicas`` > 1, each as that many processes splitting the cores (aimserve's on one shared Redis,
    as replicas behind a Service are). All start at once; their imports and model loads overlap."""
    tiers = Path(tmp, "tiers.yaml")
    tiers.write_text(TIERS)
    cli = [sys.executable, "-m", "service.cli", "serve", "--model", str(folder), "--tiers", str(tiers)]
    env = {"AIM_ADMIN_TOKEN": ADMIN, "AIM_SECRET": "bench-secret-0123456789abcdef"}

    def aimserve(name: str, extra: dict[str, str]) -> Server:
        port, state = free_port(), Path(tmp, name)
        state.mkdir()
        cmd = [*cli, "--port", str(port), "--log-level", "warning"]
        return spawn(cmd, port, env | {"AIM_STATE_DIR": str(state)} | extra, Path(tmp, f"{name}.log"))

    def naive(extra: dict[str, str]) -> Server:
        port = free_port()
        return spawn([sys.executable, "-m", "bench.naive_peer", str(folder), str(port)], port, extra, None)

    arms = {"aimserve": Arm([aimserve("aimserve", {})]), "naive": Arm([naive({})])}
    if replicas > 1 and redis_url is not None:
        threads = threads_for(replicas)
        shared = threads | {"REDIS_URL": redis_url}
        arms[f"aimserve_x{replicas}"] = Arm([aimserve(f"r{i}", shared) for i in range(replicas)])
        arms[f"naive_x{replicas}"] = Arm([naive(threads) for _ in range(replicas)])
    return arms


def _load(arm: Arm, name: str, payloads: list[dict[str, Any]]) -> None:
    """Wait for the arm's servers, create its tenant (aimserve) and encode its requests."""
    for server in arm.servers:
        wait_listening(server)
    key = new_tenant(arm.servers[0].port, ADMIN, "bench") if name.startswith("aimserve") else None
    arm.requests = [encode_posts(s.port, "/v1/classify", payloads, key) for s in arm.servers]


def measure(
    preset: str, levels: Sequence[int], seconds: float, profile: Path | None, replicas: int = 1
) -> dict[str, Any]:
    state = Path(os.environ.get("AIM_STATE_DIR", ".aimserve"))
    folder = resolve_model_path(preset, state)
    raw, payloads = bodies(folder)
    result: dict[str, Any] = {"model": preset, "replicas": replicas, "load": [load("start")]}
    result["raw_rows_per_s"] = {str(b): round(raw_forward(folder, raw, b, seconds), 1) for b in (1, 32)}
    if replicas > 1:
        side_by_side = raw_forward_processes(folder, replicas, seconds)
        result["raw_rows_per_s"][f"32_x{replicas}"] = round(side_by_side, 1)
    result["load"].append(load("after raw"))
    with tempfile.TemporaryDirectory(prefix="aim-bench-") as tmp:
        redis = EmbeddedRedis(Path(tmp, "redis")) if replicas > 1 else None
        arms = _start_arms(folder, Path(tmp), replicas, redis.start() if redis else None)
        try:
            for name, arm in arms.items():
                _load(arm, name, payloads)
                asyncio.run(drive_spread(arm.targets, len(arm.servers), 1.0))  # warm-up
                runs = []
                for c in levels:
                    spied = profile if name == "aimserve" else None
                    cpu = arm.cpu()
                    with profiled(arm.servers[0].pid, spied, f"{preset}-c{c}", seconds):
                        run = asyncio.run(drive_spread(arm.targets, c, seconds)).as_json()
                    run["server_cpu_ms_per_request"] = round(
                        1000 * (arm.cpu() - cpu) / max(1, run["requests"]), 3
                    )
                    runs.append(run)
                    if spied is not None and (spied / f"{preset}-c{c}.txt").exists():
                        result.setdefault("profile", {})[f"c{c}"] = summarize(spied / f"{preset}-c{c}.txt")
                    result["load"].append(load(f"after {name} c={c}"))
                result[name] = runs
        finally:
            for arm in arms.values():
                for server in arm.servers:
                    stop(server)
            if redis is not None:
                redis.stop()
    result["ratios"] = ratios(result)
    return result


def ratios(r: dict[str, Any]) -> dict[str, float]:
    """The issue's targets as ratios of this run (keys name the comparison); with replicas, the same for
    the replicated aimserve (``xN_`` keys), against the one-process naive peer and the replicated one."""
    n = r.get("replicas", 1)
    pairs = [("", "aimserve", "naive")]
    if n > 1:
        pairs += [(f"x{n}_", f"aimserve_x{n}", "naive"), (f"x{n}_", f"aimserve_x{n}", f"naive_x{n}")]
    out: dict[str, float] = {}
    for prefix, ours, theirs in pairs:
        peer = "" if theirs == "naive" else f"_x{n}"
        by_c = {name: {run["concurrency"]: run for run in r[name]} for name in (ours, theirs)}
        for c, run in by_c[ours].items():
            naive = by_c[theirs][c]
            out[f"c{c}_{prefix}p50_vs_naive{peer}"] = round(run["p50_ms"] / naive["p50_ms"], 3)
            out[f"c{c}_{prefix}rps_vs_naive{peer}"] = round(run["rps"] / naive["rps"], 3)
            out[f"c{c}_{prefix}rps_vs_raw_b32"] = round(run["rps"] / r["raw_rows_per_s"]["32"], 3)
            if prefix and theirs == "naive":  # the replicas against the raw loop arranged as they are
                raw_n = r["raw_rows_per_s"][f"32_x{n}"]
                out[f"c{c}_{prefix}rps_vs_raw_b32_x{n}"] = round(run["rps"] / raw_n, 3)
            if naive.get("server_cpu_ms_per_request"):
                cpu = run["server_cpu_ms_per_request"] / naive["server_cpu_ms_per_request"]
                out[f"c{c}_{prefix}cpu_per_request_vs_naive{peer}"] = round(cpu, 3)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__.split("\n")[0])
    parser.add_argument("presets", nargs="*", default=["minilm-sentiment", "digits"])
    parser.add_argument("--seconds", type=float, default=10.0, help="per load level and target")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated connection counts")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw stacks of aimserve here")
    parser.add_argument(
        "--replicas", type=int, default=2, help="also run aimserve and the peer as N processes (1: off)"
    )
    parser.add_argument("--out", default="http", help="results file name under bench/results/")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    runs = [measure(p, levels, args.seconds, args.profile, args.replicas) for p in args.presets]
    for run in runs:
        print(run["model"], run["raw_rows_per_s"], run["ratios"])
    print("wrote", write(args.out, {"seconds_per_level": args.seconds, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
