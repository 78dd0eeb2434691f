"""The gateway under Redis faults, against a real Redis the test stops (SIGSTOP) and continues, and a
cold replica hit by 200 tenants at once. Latency bounds are loose multiples of the configured Redis
timeout (the machine is shared), yet far below what an unbounded client costs (seconds per request)."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from pathlib import Path

import httpx

from service.store import EmbeddedRedis, RedisGate, TenantStore
from tests.live import SECRET, LiveService, wait_for

TIMEOUT_MS = 250


def _timed(client: httpx.Client, path: str, **kwargs: object) -> tuple[int, float]:
    start = time.perf_counter()
    status = client.request("POST" if "json" in kwargs else "GET", path, **kwargs).status_code  # type: ignore[arg-type]
    return status, time.perf_counter() - start


def test_a_hung_redis_adds_no_wait_for_known_tenants_and_readyz_answers_fast(
    tmp_path: Path, sentiment_preset: str, tiers_file: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    env = {"AIM_KEY_CACHE_TTL_S": "0.5", "AIM_REDIS_TIMEOUT_MS": str(TIMEOUT_MS)}
    service = LiveService(sentiment_preset, tiers_file, redis.url, env=env).start()
    try:
        _, key = service.new_tenant("premium", "known")  # rate limited: every request calls Redis
        with service.admin() as a:
            create = {"json": {"name": "once", "tier": "free"}, "headers": {"Idempotency-Key": "b6f0-once"}}
            first, again = a.post("/admin/tenants", **create), a.post("/admin/tenants", **create)  # type: ignore[arg-type]
            assert first.status_code == again.status_code == 201 and first.json() == again.json()
            names = [t["name"] for t in a.get("/admin/tenants").json()["tenants"]]
            assert names.count("once") == 1
            bad = a.post("/admin/tenants", json={"name": "x"}, headers={"Idempotency-Key": "has space"})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_idempotency_key"
        body = {"json": {"inputs": ["a fine day"]}}
        with service.client(key) as c:
            baseline = [_timed(c, "/v1/classify", **body) for _ in range(15)]
            assert {s for s, _ in baseline} == {200}
            os.kill(redis.pid, signal.SIGSTOP)
            try:
                hung = [_timed(c, "/v1/classify", **body) for _ in range(40)]  # ~0.5 s TTL passes
                ready = [_timed(c, "/readyz") for _ in range(5)]
            finally:
                os.kill(redis.pid, signal.SIGCONT)
            assert {s for s, _ in hung} == {200}, hung
            assert {s for s, _ in ready} == {503}
            idle_p50 = statistics.median(t for _, t in baseline)
            bound = TIMEOUT_MS / 1000
            # A request waits for Redis at most one timeout in all (its budget; asserted tightly below,
            # on /v1/me), none once the breaker is open. Loose here: the model's time on a shared machine
            # varies by more than that, and the two slowest are not bounded (any request can stall).
            assert sorted(t for _, t in hung)[-3] <= 2 * bound + 0.5, (baseline, hung)
            assert statistics.median(t for _, t in hung) <= 2 * idle_p50 + 0.05, (idle_p50, hung)
            assert max(t for _, t in ready) <= bound + 0.3, ready
            assert wait_for(lambda: c.get("/readyz").status_code == 200, 10.0)
            assert c.post("/v1/classify", **body).status_code == 200  # type: ignore[arg-type]
        assert (
            "aim_redis_persistence 2.0" in service.metrics()
        )  # the embedded Redis keeps an append-only file
    finally:
        service.stop()
        redis.stop()


def test_a_request_waits_for_a_hung_redis_at_most_one_timeout_whatever_calls_it_makes(
    tmp_path: Path, sentiment_preset: str, tiers_file: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    timeout_s = 0.6
    # Key cache TTL 0: every request looks its key up, then counts its rate limit: two Redis calls.
    env = {"AIM_KEY_CACHE_TTL_S": "0", "AIM_REDIS_TIMEOUT_MS": str(int(timeout_s * 1000))}
    service = LiveService(sentiment_preset, tiers_file, redis.url, env=env).start()
    try:
        _, key = service.new_tenant("premium", "cached")
        with service.client(key) as c:
            baseline = [_timed(c, "/v1/me") for _ in range(10)]
            os.kill(redis.pid, signal.SIGSTOP)
            try:
                hung = [_timed(c, "/v1/me") for _ in range(6)]
            finally:
                os.kill(redis.pid, signal.SIGCONT)
        assert {s for s, _ in baseline + hung} == {200}, hung
        # Without the per-request budget the first request waited two whole timeouts (lookup, then rate
        # limit: >= 1.2 s) and the next one another; with it, no request waits more than one.
        idle = statistics.median(t for _, t in baseline)
        assert max(t for _, t in hung) <= timeout_s + idle + 0.3, (idle, hung)
        assert service.components is not None
        assert service.components.store.gate.openings == 1  # two requests' timeouts opened the breaker
    finally:
        service.stop()
        redis.stop()


async def _create_tenants(url: str, n: int) -> list[str]:
    gate = RedisGate.from_url(url)
    store = TenantStore(gate, SECRET.encode())
    try:
        return [(await store.create_tenant(f"cold-{i}", "premium"))[1].api_key for i in range(n)]
    finally:
        await store.aclose()
        await gate.aclose()


async def _burst(base_url: str, keys: list[str]) -> list[int]:
    limits = httpx.Limits(max_connections=len(keys), max_keepalive_connections=len(keys))
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as client:
        replies = await asyncio.gather(
            *(client.get("/v1/me", headers={"Authorization": f"Bearer {k}"}) for k in keys)
        )
    return [r.status_code for r in replies]


def test_a_cold_replica_hit_by_200_tenants_at_once_queues_for_redis_and_answers_all(
    redis_server: EmbeddedRedis, sentiment_preset: str, tiers_file: Path
) -> None:
    keys = asyncio.run(_create_tenants(redis_server.url, 200))
    # A pool of 16 for 200 simultaneous first lookups (and 200 rate-limit calls): pure back-pressure.
    env = {"AIM_REDIS_POOL_SIZE": "16", "AIM_REDIS_POOL_WAIT_MS": "5000"}
    cold = LiveService(sentiment_preset, tiers_file, redis_server.url, env=env).start()
    try:
        with cold.client() as c:
            assert wait_for(lambda: c.get("/readyz").status_code == 200)
        statuses = asyncio.run(_burst(cold.url, keys))
        assert statuses == [200] * 200, sorted(set(statuses))
        assert cold.components is not None
        gate = cold.components.store.gate
        assert gate.is_up and gate.openings == 0  # back-pressure never opened the breaker
        # No key lookup failed. (A rate-limit call that found no slot in time falls back to the local
        # bucket and counts as a rate_limit error: allowed back-pressure, not an outage.)
        errors = [line for line in cold.metrics().splitlines() if line.startswith("aim_redis_errors_total{")]
        assert all(line.endswith(" 0.0") for line in errors if 'op="resolve_key"' in line), errors
    finally:
        cold.stop()
