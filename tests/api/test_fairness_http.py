"""The noisy neighbour, against the real sentiment service: a free tenant floods inside its limits (the
largest request its compute budget allows, five at a time, without pause); premium's p99 latency stays
within 2x its idle p99 plus one batch time (a batch at the cost limit, measured on the same server)."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.store import EmbeddedRedis
from tests.api.test_admission_http import LONG, SHORT
from tests.live import LiveService, wait_for

SAMPLES = 12
FLOODERS = 5
FLOOD = {"inputs": [LONG] * 8}  # 8 x 512 tokens: the whole per-request budget, 4 batches at the cost limit


def _p99(latencies: list[float]) -> float:
    ranked = sorted(latencies)
    return ranked[min(len(ranked) - 1, int(0.99 * len(ranked)))]  # nearest rank


def _forward(service: LiveService) -> tuple[float, float, float]:
    """(seconds, batches, rows) of the model's forward passes so far, from /metrics."""
    text = service.metrics()
    pattern = r'^aim_forward_seconds_(sum|count)\{task="text-classification"\} (\S+)$'
    found = dict(re.findall(pattern, text, re.M))
    rows = re.search(r"^aim_batch_size_sum (\S+)$", text, re.M)
    assert rows is not None
    return float(found["sum"]), float(found["count"]), float(rows.group(1))


def _premium_latencies(service: LiveService, key: str, samples: int = SAMPLES) -> list[float]:
    out = []
    with service.client(key) as c:
        for i in range(samples):
            t0 = time.perf_counter()
            r = c.post("/v1/classify", json={"inputs": [f"{SHORT} ({i})"]})
            out.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    return out


def _reference(service: LiveService, premium: str) -> tuple[float, float]:
    """(premium's idle p99, the time of one batch at the cost limit) on the idle service."""
    idle = _p99(_premium_latencies(service, premium))
    before = _forward(service)
    with service.client(premium) as c:  # premium's batches are never split: full-cost batches
        assert c.post("/v1/classify", json=FLOOD).status_code == 200
    after = _forward(service)
    return idle, (after[0] - before[0]) / (after[1] - before[1])


def test_premium_p99_under_a_free_flood_stays_within_twice_idle_plus_one_batch(
    redis_server: EmbeddedRedis, sentiment_preset: str, module_tiers: Path
) -> None:
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 2 * cores:  # other processes' CPU use, not the flood's, would decide a latency bound
        pytest.skip(f"load average {load:.1f} on {cores} cores: a latency bound is not meaningful here")
    # No refusal by expected wait: the scheduler alone has to protect premium here.
    env = {"AIM_MAX_QUEUE_WAIT_S": "600"}
    service = LiveService(sentiment_preset, module_tiers, redis_server.url, env).start()
    try:
        _, premium = service.new_tenant("premium")
        _, free = service.new_tenant("free")
        _premium_latencies(service, premium)  # warm-up
        idle, batch = _reference(service, premium)
        stop = threading.Event()
        served: list[int] = []
        clients = [service.client(free) for _ in range(FLOODERS)]

        def flood(c: httpx.Client) -> None:
            with contextlib.suppress(httpx.HTTPError, RuntimeError):  # closed under it: the flood ends
                while not stop.is_set():
                    served.append(c.post("/v1/classify", json=FLOOD).status_code)

        threads = [threading.Thread(target=flood, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        time.sleep(2 * batch)  # the flood is queued
        start = _forward(service)
        loaded = _premium_latencies(service, premium)
        end = _forward(service)
        stop.set()
        for c in clients:  # the server drops the abandoned rows: no waiting for the flood to drain
            c.close()
        for t in threads:
            t.join(120)
        assert service.components is not None and wait_for(lambda: service.components.queue_depth == 0)
        _premium_latencies(service, premium, 1)  # waits out the last free batch
        idle_after, batch_after = _reference(service, premium)
    finally:
        service.stop()
    # The reference is measured before and after the flood and the larger kept: on a shared machine the
    # CPU left to the service changes within seconds (that is the only tolerance; on a quiet 2-core machine
    # p99 measured 0.13 s against a bound of 0.23 s).
    idle, batch = max(idle, idle_after), max(batch, batch_after)
    p99 = _p99(loaded)
    # The free batches that ran while premium was measured (premium's own one-row batches left out of
    # the count, not of the time: a few ms each): sub-batches, since premium is active.
    free_batches, free_rows = end[1] - start[1] - SAMPLES, end[2] - start[2] - SAMPLES
    sub_batch = (end[0] - start[0]) / max(1.0, free_batches)
    print(
        f"load {os.getloadavg()[0]:.1f}: premium p99 idle {idle:.3f} s, under flood {p99:.3f} s, "
        f"one batch {batch:.3f} s, a free sub-batch under the flood {sub_batch:.3f} s "
        f"({free_rows:.0f} rows in {free_batches:.0f} batches)"
    )
    assert set(served) <= {200} and free_batches >= SAMPLES / 2  # the flood ran meanwhile
    # The sub-batch cap: a free row (512 tokens) is over a sub-batch's cost (1024 / 4), so while premium
    # is active every free batch is that one row; one full batch may have started before it was.
    assert free_rows - free_batches <= 1, f"{free_rows:.0f} free rows in {free_batches:.0f} batches"
    # The bound. The worker is not preemptive and premium's client is closed-loop (its next
    # request arrives just after the next free batch started), so premium waits for one free batch every
    # time: a sub-batch (here one row, half a full batch's cost) while premium is active.
    bound = 2 * idle + batch
    assert p99 <= bound, f"p99 {p99:.3f} s > 2 x {idle:.3f} + {batch:.3f} s"
