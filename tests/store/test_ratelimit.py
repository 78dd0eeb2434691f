"""Rate limiting shared by two limiters (two "replicas") on one real Redis, and its outage fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from service.store import EmbeddedRedis, LocalRateLimiter, RateLimiter, RedisGate, make_redis

pytestmark = pytest.mark.anyio


async def test_two_replicas_share_exactly_one_budget(redis: Redis, namespace: str) -> None:
    a, b = (
        RateLimiter(RedisGate(redis), namespace=namespace),
        RateLimiter(RedisGate(redis), namespace=namespace),
    )
    limit = 10  # one token per 6 s: no refill can happen during this test
    decisions = [await (a if i % 2 else b).hit("tenant:x", limit) for i in range(25)]
    assert [d.allowed for d in decisions] == [True] * limit + [False] * 15
    for refused in decisions[limit:]:
        assert 0 < refused.retry_after <= 60 / limit
    # Other buckets are independent.
    assert (await a.hit("tenant:y", limit)).allowed


async def test_concurrent_hits_are_counted_atomically(redis: Redis, namespace: str) -> None:
    gate = RedisGate(redis)  # one gate: its slots keep 100 concurrent calls inside the client's pool
    await gate.warm()
    limiters = [RateLimiter(gate, namespace=namespace) for _ in range(4)]
    limit = 30
    decisions = await asyncio.gather(*(limiters[i % 4].hit("burst", limit) for i in range(100)))
    assert sum(d.allowed for d in decisions) == limit


async def test_refill_after_retry_after(redis: Redis, namespace: str) -> None:
    limiter = RateLimiter(RedisGate(redis), namespace=namespace)
    limit = 300  # one token per 0.2 s
    while (await limiter.hit("refill", limit)).allowed:
        pass
    refused = await limiter.hit("refill", limit)
    assert not refused.allowed
    assert 0 < refused.retry_after <= 0.2 + 1e-6
    await asyncio.sleep(refused.retry_after + 0.02)
    assert (await limiter.hit("refill", limit)).allowed
    assert not (await limiter.hit("refill", limit)).allowed


def test_local_limiter_same_algorithm() -> None:
    local = LocalRateLimiter()
    limit, t0 = 6, 1000.0  # one token per 10 s
    assert [local.hit("b", limit, t0).allowed for _ in range(7)] == [True] * 6 + [False]
    assert local.hit("b", limit, t0).retry_after == pytest.approx(10.0)
    assert not local.hit("b", limit, t0 + 9.9).allowed
    assert local.hit("b", limit, t0 + 10.0).allowed
    assert not local.hit("b", limit, t0 + 10.0).allowed
    assert [local.hit("b", limit, t0 + 1000.0).allowed for _ in range(7)] == [True] * 6 + [False]


@pytest.fixture
async def own_client(own_redis: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = make_redis(own_redis.url)
    yield client
    await client.aclose()


async def test_redis_outage_falls_back_to_a_local_limit(own_redis: EmbeddedRedis, own_client: Redis) -> None:
    gate = RedisGate(own_client, probe_interval_s=0.1)
    limiter = RateLimiter(gate)
    limit = 5
    assert (await limiter.hit("t", limit)).allowed
    own_redis.stop()
    # Fail open, but not unlimited: this replica enforces the same limit on its own.
    during = [await limiter.hit("t", limit) for _ in range(8)]
    assert [d.allowed for d in during] == [True] * limit + [False] * 3
    assert gate.down_for() is not None and all(d.local for d in during)

    own_redis.start()
    await asyncio.sleep(0.3)  # the background probe PINGs every 0.1 s
    # Back on the shared bucket, which still holds the one hit made before the outage.
    after = [await limiter.hit("t", limit) for _ in range(5)]
    assert [d.allowed for d in after] == [True] * (limit - 1) + [False]
    assert gate.down_for() is None and not any(d.local for d in after)
    await gate.aclose()
