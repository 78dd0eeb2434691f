"""RedisGate against a real Redis: bounded calls, the breaker and its background probe, slots as
back-pressure, and which failures count as an outage."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest

from service.store import EmbeddedRedis, RedisGate, RedisUnavailable, make_redis

pytestmark = pytest.mark.anyio
TIMEOUT, PROBE = 0.2, 0.1


@pytest.fixture
async def gate(own_redis: EmbeddedRedis) -> AsyncIterator[RedisGate]:
    gate = RedisGate.from_url(own_redis.url, timeout_s=TIMEOUT, probe_interval_s=PROBE, slots=4)
    yield gate
    await gate.aclose()


async def test_a_hung_redis_costs_one_bounded_call_then_none_and_the_probe_closes_the_breaker(
    own_redis: EmbeddedRedis, gate: RedisGate
) -> None:
    assert await gate.call(lambda: gate.redis.set("k", "v")) and gate.is_up
    os.kill(own_redis.pid, signal.SIGSTOP)
    try:
        start = time.perf_counter()
        first = await asyncio.gather(
            *(gate.call(lambda: gate.redis.get("k")) for _ in range(gate.failure_threshold)),
            return_exceptions=True,
        )
        elapsed = time.perf_counter() - start
        assert all(isinstance(e, RedisUnavailable) and e.sent and not e.busy for e in first), first
        assert TIMEOUT * 0.9 <= elapsed <= TIMEOUT + 0.3, elapsed  # the bound, reconnect and retry included
        assert not gate.is_up  # failure_threshold (2) timeouts in a row: open
        start = time.perf_counter()
        for _ in range(100):  # breaker open: no call waits on Redis
            with pytest.raises(RedisUnavailable) as caught:
                await gate.call(lambda: gate.redis.get("k"))
            assert not caught.value.sent
        assert not await gate.ping()
        assert time.perf_counter() - start < 0.1
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)
    recovered: list[float] = []
    gate.on_recovery(lambda: recovered.append(time.monotonic()))
    start = time.monotonic()
    while not gate.is_up:
        assert time.monotonic() - start < 2.0, "the background probe did not close the breaker"
        await asyncio.sleep(0.01)
    assert len(recovered) == 1 and await gate.call(lambda: gate.redis.get("k")) == "v"


async def test_a_refused_connection_opens_at_once_and_means_not_sent(
    own_redis: EmbeddedRedis, gate: RedisGate
) -> None:
    await gate.ping()
    own_redis.stop()
    with pytest.raises(RedisUnavailable) as caught:
        await gate.call(lambda: gate.redis.incr("n"))
    assert not caught.value.sent and not gate.is_up  # refused: the write never left this process
    own_redis.start()


async def test_one_slow_answer_does_not_open_the_breaker(own_redis: EmbeddedRedis, gate: RedisGate) -> None:
    os.kill(own_redis.pid, signal.SIGSTOP)
    try:
        with pytest.raises(RedisUnavailable):
            await gate.call(gate.redis.ping)
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)
    assert gate.is_up and await gate.call(gate.redis.ping)


async def test_slots_are_back_pressure_not_an_outage(own_redis: EmbeddedRedis) -> None:
    client = make_redis(own_redis.url, timeout_s=2.0)
    gate = RedisGate(client, slots=2, slot_wait_s=0.05, timeout_s=2.0)
    try:
        # Two calls hold both slots for 0.3 s (a server-side BLPOP); a third waits 0.05 s and gives up.
        held = [asyncio.create_task(gate.call(lambda: client.blpop(["nothing"], 0.3))) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(RedisUnavailable) as caught:
            await gate.call(client.ping)
        assert caught.value.busy and not caught.value.sent
        assert gate.is_up and gate.busy_count == 1  # the breaker stays closed
        await asyncio.gather(*held)
        # 200 concurrent calls through 2 warm slots all succeed when each may wait long enough.
        patient = RedisGate(client, slots=2, slot_wait_s=5.0)
        assert await patient.warm() == 2
        replies = await asyncio.gather(*(patient.call(lambda i=i: client.echo(f"m{i}")) for i in range(200)))
        assert replies == [f"m{i}" for i in range(200)] and patient.is_up
    finally:
        await gate.aclose()
        await client.aclose()


async def test_an_error_reply_is_not_an_outage(gate: RedisGate) -> None:
    await gate.call(lambda: gate.redis.set("s", "text"))
    with pytest.raises(RedisUnavailable) as caught:
        await gate.call(lambda: gate.redis.incr("s"))  # WRONGTYPE-like error reply: Redis answered
    assert caught.value.sent and gate.is_up


async def test_the_pool_holds_more_connections_than_the_slots(own_redis: EmbeddedRedis) -> None:
    gate = RedisGate.from_url(own_redis.url, slots=3)
    try:
        assert gate.redis.connection_pool.max_connections == 3 + 4
    finally:
        await gate.aclose()
