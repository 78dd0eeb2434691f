"""Fault injection under steady load: two replicas (``aimserve serve`` processes) on one Redis.

Phases, in order, each with the same steady load (``CLIENTS`` classify clients spread over both
replicas, plus one admin writer creating a tenant every 0.5 s with an ``Idempotency-Key``):

- ``baseline``: nothing wrong;
- ``redis_hang``: Redis stopped with SIGSTOP for ``HANG_S``, then continued, plus a recovery window;
- ``redis_kill``: Redis killed with SIGKILL, restarted on the same port and data after ``DOWN_S``;
- ``replica_restart``: replica B stopped (SIGTERM) and started again while A keeps serving.

Every answer is counted as **served** (2xx), **refused** (429/503 with ``Retry-After``: the client is
told when to come back; by status and error code in ``refused_by_code``), or **failed** (anything else:
a 5xx without ``Retry-After``, a connection cut after the request was sent, a timeout). A request whose
connection is refused (it never reached a replica) is sent once to the other replica, as a load balancer
would: **served_after_failover**.
**Lost**: admin creates that were acknowledged (201), or answered ``outcome_unknown`` (or not at all)
and then retried with the same key to a 201, but are missing at the end; **duplicated**: creates that
made two tenants. Results: ``bench/results/faults.json``.

Run: ``python -m bench.faults`` (about 1.5 minutes; builds nothing: the ``minilm-sentiment`` preset
must be built).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import write
from bench.fault_load import ADMIN, Tally, admin_writer, classify_client, settle_writes
from service.store import EmbeddedRedis
from service.store.embedded import free_port

MODEL = "minilm-sentiment"
CLIENTS = 8
HANG_S, DOWN_S, RECOVER_S, BASELINE_S = 5.0, 3.0, 4.0, 5.0
METRICS = "bench-metrics-token-0123456789"
SECRET = "bench-secret-0123456789abcdef"
TIERS = (
    "default_tier: premium\ntiers:\n  premium:\n    sigma: 0.5\n    rate_limit: {requests_per_minute: 6000}\n"
)


class Replica:
    """One ``aimserve serve`` process on a fixed port (kept across restarts)."""

    def __init__(self, name: str, redis_url: str, tiers: Path, state_dir: Path) -> None:
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._cmd = [sys.executable, "-m", "service.cli", "serve", "--model", MODEL, "--tiers", str(tiers)]
        self._cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self._env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "AIM_STATE_DIR": str(state_dir),
            "AIM_ADMIN_TOKEN": ADMIN,
            "AIM_METRICS_TOKEN": METRICS,
            "AIM_SECRET": SECRET,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self._cmd, env=self._env, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    async def wait_ready(self, client: httpx.AsyncClient, timeout_s: float = 120.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{self.url}/readyz")).status_code == 200:
                    return time.monotonic() - start
            await asyncio.sleep(0.1)
        raise TimeoutError(f"replica {self.name} not ready")


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def scenario(
    redis: EmbeddedRedis, replicas: list[Replica], http: httpx.AsyncClient, tally: Tally
) -> dict[str, float]:
    timings: dict[str, float] = {}
    tally.phase = "baseline"
    await asyncio.sleep(BASELINE_S)
    tally.phase = "redis_hang"
    with stopped(redis.pid):
        await asyncio.sleep(HANG_S)
    await asyncio.sleep(RECOVER_S)
    tally.phase = "redis_kill"
    redis.kill()
    await asyncio.sleep(DOWN_S)
    start = time.monotonic()
    await asyncio.to_thread(redis.start)
    timings["redis_restart_s"] = time.monotonic() - start
    await asyncio.sleep(RECOVER_S)
    tally.phase = "replica_restart"
    await asyncio.to_thread(replicas[1].stop)
    replicas[1].start()
    timings["replica_ready_after_s"] = await replicas[1].wait_ready(http)
    await asyncio.sleep(RECOVER_S)
    return timings


async def run(work: Path) -> dict[str, Any]:
    redis = EmbeddedRedis(work / "redis")
    redis.start()
    tiers = work / "tiers.yaml"
    tiers.write_text(TIERS)
    state = Path(os.environ.get("AIM_STATE_DIR", ".aimserve")).resolve()
    replicas = [Replica(name, redis.url, tiers, state) for name in "ab"]
    urls = [r.url for r in replicas]
    tally, stop = Tally(), asyncio.Event()
    writes: dict[str, Any] = {"answers": Counter(), "acknowledged": {}, "pending": {}}
    limits = httpx.Limits(max_connections=64)
    try:
        for r in replicas:
            r.start()
        async with httpx.AsyncClient(timeout=10.0, limits=limits) as http:
            for r in replicas:
                await r.wait_ready(http)
            keys = []
            for i in range(20):
                r = await http.post(
                    f"{replicas[0].url}/admin/tenants",
                    json={"name": f"load{i}", "tier": "premium"},
                    headers={"Authorization": f"Bearer {ADMIN}"},
                )
                keys.append(r.json()["api_key"])
            tasks = [
                asyncio.create_task(classify_client(i, http, urls, keys, tally, stop)) for i in range(CLIENTS)
            ]
            tasks.append(asyncio.create_task(admin_writer(http, urls, writes, stop)))
            await asyncio.sleep(2.0)  # warm-up: every tenant resolved once on both replicas
            timings = await scenario(redis, replicas, http, tally)
            stop.set()
            await asyncio.gather(*tasks)
            write_outcomes = await settle_writes(http, urls[0], writes)
    finally:
        for r in replicas:
            r.stop()
        redis.stop()
    phases = {}
    for phase, counts in tally.counts.items():
        served = sorted(tally.latency.get(phase, []))  # failovers included
        phases[phase] = {
            **{k: counts.get(k, 0) for k in ("served", "served_after_failover", "refused", "failed")},
            "served_p50_ms": 1000 * statistics.median(served) if served else None,
            "served_p99_ms": 1000 * served[int(0.99 * (len(served) - 1))] if served else None,
            "served_max_ms": 1000 * served[-1] if served else None,
            "refused_by_code": dict(tally.refusals.get(phase, {})),
        }
    return {
        "phases": phases,
        "admin_writes": {**write_outcomes, "answers": dict(writes["answers"])},
        **timings,
    }


def main() -> None:
    load_before = os.getloadavg()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aim-faults-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    payload = {
        "benchmark": "faults",
        "model": MODEL,
        "replicas": 2,
        "clients": CLIENTS,
        "durations_s": {"baseline": BASELINE_S, "hang": HANG_S, "down": DOWN_S, "recover": RECOVER_S},
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "note": "shared 2-core machine under load from other work; counts, not speed, are the result",
        "wall_s": time.monotonic() - start,
        **result,
    }
    path = write("faults", payload)
    print(path.read_text())


if __name__ == "__main__":
    main()
