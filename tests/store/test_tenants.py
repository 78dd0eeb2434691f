"""Tenant and key lifecycle against a real Redis server."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.errors import BadInput, NotFound, Unauthorized
from service.store import FocusPref, TenantStore
from tests.store.conftest import SECRET, StoreFactory

pytestmark = pytest.mark.anyio


async def test_create_then_resolve(make_store: StoreFactory) -> None:
    store = await make_store()
    tenant, issued = await store.create_tenant("  Acme Corp ", "free")
    assert tenant.name == "Acme Corp"
    assert tenant.tier == "free"
    assert tenant.focus is None
    assert tenant.id.startswith("ten_")
    assert issued.api_key.startswith("aim_sk_")
    assert issued.key_id.startswith("key_")
    assert await store.resolve_key(issued.api_key) == tenant
    assert await store.get_tenant(tenant.id) == tenant


async def test_unknown_and_malformed_keys_are_unauthorized(make_store: StoreFactory) -> None:
    store = await make_store()
    _, issued = await store.create_tenant("a", "free")
    forged = issued.api_key[:-1] + ("A" if issued.api_key[-1] != "A" else "B")
    for bad in (forged, "", "Bearer x", "aim_sk_short", issued.api_key + "x", "aim_sk_" + "!" * 43):
        with pytest.raises(Unauthorized):
            await store.resolve_key(bad)


async def test_rotation_keeps_old_key_until_revoked(make_store: StoreFactory) -> None:
    store = await make_store()
    tenant, first = await store.create_tenant("rot", "standard")
    second = await store.issue_key(tenant.id)
    assert second.api_key != first.api_key
    assert (await store.resolve_key(first.api_key)).id == tenant.id
    assert (await store.resolve_key(second.api_key)).id == tenant.id
    assert [k.key_id for k in await store.list_keys(tenant.id)] == [first.key_id, second.key_id]

    await store.revoke_key(tenant.id, first.key_id)
    with pytest.raises(Unauthorized):
        await store.resolve_key(first.api_key)
    assert (await store.resolve_key(second.api_key)).id == tenant.id
    assert [k.key_id for k in await store.list_keys(tenant.id)] == [second.key_id]
    with pytest.raises(NotFound):
        await store.revoke_key(tenant.id, first.key_id)


async def test_revocation_reaches_another_replica_with_a_warm_cache(make_store: StoreFactory) -> None:
    # A TTL of a minute: only the pub/sub invalidation can make replica b refuse the key in time.
    a, b = await make_store(cache_ttl_s=60.0), await make_store(cache_ttl_s=60.0)
    tenant, issued = await a.create_tenant("two replicas", "free")
    assert (await b.resolve_key(issued.api_key)).id == tenant.id  # now cached in b
    await a.revoke_key(tenant.id, issued.key_id)
    await _eventually_unauthorized(b, issued.api_key, within_s=2.0)


async def test_update_fields_and_clear_focus(make_store: StoreFactory) -> None:
    store = await make_store()
    tenant, issued = await store.create_tenant("upd", "free")
    focus = FocusPref(classes=["positive"], strength=1.25, direction="suppress")
    updated = await store.update_tenant(tenant.id, name="renamed", tier="premium", focus=focus)
    assert (updated.name, updated.tier, updated.focus) == ("renamed", "premium", focus)
    assert updated.created_at == tenant.created_at
    assert await store.resolve_key(issued.api_key) == updated

    only_name = await store.update_tenant(tenant.id, name="again")
    assert (only_name.tier, only_name.focus) == ("premium", focus)
    cleared = await store.update_tenant(tenant.id, focus=None)
    assert cleared.focus is None
    assert (await store.get_tenant(tenant.id)).focus is None


async def test_delete_revokes_every_key(make_store: StoreFactory, redis: Redis, namespace: str) -> None:
    store = await make_store()
    tenant, first = await store.create_tenant("gone", "free")
    second = await store.issue_key(tenant.id)
    await store.resolve_key(first.api_key)
    await store.delete_tenant(tenant.id)
    for key in (first, second):
        with pytest.raises(Unauthorized):
            await store.resolve_key(key.api_key)
    with pytest.raises(NotFound):
        await store.get_tenant(tenant.id)
    assert await store.list_tenants() == []
    assert [k async for k in redis.scan_iter(f"{namespace}:*")] == []  # nothing left behind


async def test_list_tenants_oldest_first(make_store: StoreFactory) -> None:
    store = await make_store()
    made = [(await store.create_tenant(f"t{i}", "free"))[0] for i in range(4)]
    assert await store.list_tenants() == made


async def test_unknown_ids_are_not_found(make_store: StoreFactory) -> None:
    store = await make_store()
    tenant, _ = await store.create_tenant("x", "free")
    missing = "ten_0000000000000000"
    with pytest.raises(NotFound):
        await store.get_tenant(missing)
    with pytest.raises(NotFound):
        await store.update_tenant(missing, name="y")
    with pytest.raises(NotFound):
        await store.delete_tenant(missing)
    with pytest.raises(NotFound):
        await store.issue_key(missing)
    with pytest.raises(NotFound):
        await store.list_keys(missing)
    for tenant_id, key_id in ((tenant.id, "key_000000000000"), (tenant.id, "nope"), ("../x", "key_1")):
        with pytest.raises(NotFound):
            await store.revoke_key(tenant_id, key_id)
    assert (await store.get_tenant(tenant.id)).id == tenant.id


@pytest.mark.parametrize(
    ("name", "tier"), [("", "free"), ("   ", "free"), ("x" * 129, "free"), ("ok", "bad tier")]
)
async def test_bad_names_and_tiers_are_bad_input(make_store: StoreFactory, name: str, tier: str) -> None:
    store = await make_store()
    with pytest.raises(BadInput):
        await store.create_tenant(name, tier)
    assert await store.list_tenants() == []


async def test_redis_holds_no_key_and_no_secret(
    make_store: StoreFactory, redis: Redis, namespace: str
) -> None:
    store = await make_store()
    tenant, first = await store.create_tenant("leak check", "free")
    second = await store.issue_key(tenant.id)
    dump = []
    async for name in redis.scan_iter(f"{namespace}:*"):
        kind = await redis.type(name)
        assert kind in ("hash", "set")
        values = (
            (await redis.hgetall(name)).items()
            if kind == "hash"
            else [(m, "") for m in await redis.smembers(name)]
        )
        dump += [name, *(str(v) for kv in values for v in kv)]
    assert len(dump) > 10
    blob = "\n".join(dump)
    for needle in (first.api_key, second.api_key, first.api_key[7:], SECRET.decode()):
        assert needle not in blob
    assert first.api_key not in repr(first) and first.api_key not in str(first)
    assert SECRET.decode() not in repr(store)


async def _eventually_unauthorized(store: TenantStore, api_key: str, within_s: float) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + within_s
    while True:
        try:
            await store.resolve_key(api_key)
        except Unauthorized:
            return
        assert time.monotonic() < deadline, "the key was still accepted"
        await asyncio.sleep(0.01)
