"""Cache invalidation across two TenantStore "replicas" sharing one real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from service.store import FocusPref, RedisGate, Tenant, TenantStore
from tests.store.conftest import SECRET, StoreFactory

pytestmark = pytest.mark.anyio

LONG_TTL = 60.0  # longer than any test: only pub/sub (or a flush) can refresh a cached entry


async def _until(check: Callable[[], Awaitable[bool]], within_s: float) -> float:
    """Seconds until ``check()`` holds; fails after ``within_s``."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < within_s, "condition not reached in time"
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def _tier_is(store: TenantStore, api_key: str, tier: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await store.resolve_key(api_key)).tier == tier

    return check


async def test_tier_and_focus_changes_reach_the_other_replica(make_store: StoreFactory) -> None:
    a, b = await make_store(cache_ttl_s=LONG_TTL), await make_store(cache_ttl_s=LONG_TTL)
    tenant, issued = await a.create_tenant("tiered", "free")
    assert (await b.resolve_key(issued.api_key)).tier == "free"

    await a.update_tenant(tenant.id, tier="premium")
    assert await _until(_tier_is(b, issued.api_key, "premium"), within_s=2.0) < 2.0

    focus = FocusPref(classes=["cat"], strength=0.5)

    async def focus_seen() -> bool:
        return (await b.resolve_key(issued.api_key)).focus == focus

    await a.update_tenant(tenant.id, focus=focus)
    await _until(focus_seen, within_s=2.0)


async def test_a_cached_entry_without_invalidation_lives_exactly_one_ttl(
    make_store: StoreFactory, redis: Redis, namespace: str
) -> None:
    ttl = 0.4
    store = await make_store(cache_ttl_s=ttl)
    tenant, issued = await store.create_tenant("ttl", "free")
    await store.resolve_key(issued.api_key)
    # Change the record behind the store's back: no invalidation is published.
    await redis.hset(f"{namespace}:tenant:{tenant.id}", "tier", "standard")
    assert (await store.resolve_key(issued.api_key)).tier == "free"  # still cached
    waited = await _until(_tier_is(store, issued.api_key, "standard"), within_s=ttl + 2.0)
    assert waited >= ttl * 0.5


async def test_cache_is_flushed_when_the_subscription_reconnects(
    make_store: StoreFactory, redis: Redis, namespace: str
) -> None:
    store = await make_store(cache_ttl_s=LONG_TTL)
    tenant, issued = await store.create_tenant("flush", "free")
    await store.resolve_key(issued.api_key)
    # Drop every pub/sub connection, then change the record: this change's message would be missed.
    await redis.client_kill_filter(_type="pubsub")
    await redis.hset(f"{namespace}:tenant:{tenant.id}", "tier", "standard")
    await _until(_tier_is(store, issued.api_key, "standard"), within_s=5.0)
    # And the listener is back: a published change reaches the cache again.
    other = TenantStore(RedisGate(redis), SECRET, namespace=namespace)
    await other.update_tenant(tenant.id, tier="premium")
    await _until(_tier_is(store, issued.api_key, "premium"), within_s=5.0)


async def test_deleting_a_tenant_reaches_the_other_replica(make_store: StoreFactory) -> None:
    a, b = await make_store(cache_ttl_s=LONG_TTL), await make_store(cache_ttl_s=LONG_TTL)
    tenant, issued = await a.create_tenant("deleted", "free")
    resolved: Tenant = await b.resolve_key(issued.api_key)
    assert resolved.id == tenant.id
    await a.delete_tenant(tenant.id)

    async def refused() -> bool:
        from service.errors import Unauthorized

        try:
            await b.resolve_key(issued.api_key)
        except Unauthorized:
            return True
        return False

    await _until(refused, within_s=2.0)
