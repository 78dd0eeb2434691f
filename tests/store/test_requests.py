"""Request records off the response path: queued, readable at once, written in one pipeline per flush."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from service.errors import NotFound, Unavailable
from service.store import EmbeddedRedis, RedisGate, RequestRecords

pytestmark = pytest.mark.anyio


@pytest.fixture
async def gate(redis: Redis) -> AsyncIterator[RedisGate]:
    g = RedisGate(redis)
    yield g
    await g.aclose()


def _id() -> str:
    return "req_" + secrets.token_hex(8)


async def _commands(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_commands_processed"])


async def test_a_burst_is_readable_at_once_and_written_in_one_pipeline(redis: Redis, gate: RedisGate) -> None:
    records = RequestRecords(gate)
    records.start()
    ids = [_id() for _ in range(200)]
    before = await _commands(redis)
    for i, request_id in enumerate(ids):
        await records.remember(request_id, "t1", "free", [f"label{i}"])
    # Answered from the queue before any flush has run: feedback right after the answer finds it.
    assert (await records.get(ids[7], "t1")).labels == ["label7"]
    with pytest.raises(NotFound):
        await records.get(ids[7], "someone-else")
    await records.aclose()
    # 200 HSET + 200 EXPIRE, plus connection setup (AUTH, CLIENT SETINFO) and INFO: no per-record MULTI/EXEC.
    assert await _commands(redis) - before < 400 + 20
    for i in (0, 199):
        assert (await redis.hgetall(f"aim:req:{ids[i]}"))["labels"] == f'["label{i}"]'
        assert 0 < await redis.ttl(f"aim:req:{ids[i]}") <= 24 * 3600


async def test_without_a_writer_remember_writes_before_returning(redis: Redis, gate: RedisGate) -> None:
    records = RequestRecords(gate)
    request_id = _id()
    await records.remember(request_id, "t1", "free", ["a"])
    assert await redis.exists(f"aim:req:{request_id}") == 1


async def test_a_full_queue_waits_for_the_writer(redis: Redis, gate: RedisGate) -> None:
    records = RequestRecords(gate, max_pending=4)
    records.start()
    ids = [_id() for _ in range(20)]
    await asyncio.gather(*(records.remember(i, "t1", "free", ["a"]) for i in ids))
    await records.aclose()
    assert all(await asyncio.gather(*(redis.exists(f"aim:req:{i}") for i in ids)))


async def test_a_redis_failure_drops_the_batch_and_keeps_serving(own_redis: EmbeddedRedis) -> None:
    own = own_redis
    gate = RedisGate.from_url(own.url)
    records = RequestRecords(gate)
    records.start()
    own.stop()
    await records.remember(_id(), "t1", "free", ["a"])  # returns although Redis is gone
    await records.aclose()  # logged, not raised
    await gate.aclose()


async def test_records_use_the_store_namespace_and_its_503_when_redis_is_gone(
    own_redis: EmbeddedRedis,
) -> None:
    own = own_redis
    gate = RedisGate.from_url(own.url)
    calls: list[tuple[str, bool]] = []
    gate.observer = lambda op, seconds, failed: calls.append((op, failed))
    records = RequestRecords(gate, namespace="other")
    request_id = _id()
    await records.remember(request_id, "t1", "free", ["a"])
    assert await gate.redis.exists(f"other:req:{request_id}") == 1
    assert await records.first_label(request_id, 0) and not await records.first_label(request_id, 0)
    assert calls == [("records_write", False), ("feedback", False), ("feedback", False)]
    own.stop()
    for read in (records.get(_id(), "t1"), records.first_label(request_id, 1)):
        with pytest.raises(Unavailable) as caught:
            await read
        assert caught.value.code == "dependency_unavailable"
    assert calls[-2:] == [("records_read", True), ("feedback", True)]
    await gate.aclose()
