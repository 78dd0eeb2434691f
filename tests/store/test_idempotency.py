"""Idempotent creates against a real Redis, including the ambiguous case: a create sent to a Redis that
stopped answering (SIGSTOP) is applied when it continues; the retry with the same key finds it."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from service.errors import BadInput, Unavailable
from service.store import EmbeddedRedis, RedisGate, TenantStore
from service.store.idempotency import check_idempotency_key
from tests.store.conftest import SECRET, StoreFactory

pytestmark = pytest.mark.anyio


async def test_a_repeated_create_returns_the_first_tenant_and_key(make_store: StoreFactory) -> None:
    a, b = await make_store(), await make_store()
    first = await a.create_tenant("acme", "free", idempotency_key="3f1c-create-acme")
    again = await b.create_tenant("acme", "free", idempotency_key="3f1c-create-acme")  # another replica
    assert again == first
    assert [t.id for t in await a.list_tenants()] == [first[0].id]
    assert await a.resolve_key(first[1].api_key) == first[0]
    other = await a.create_tenant("acme", "free", idempotency_key="another-key")
    assert other[0].id != first[0].id and other[1].api_key != first[1].api_key
    plain = [await a.create_tenant("acme", "free") for _ in range(2)]  # no key: two tenants
    assert plain[0][0].id != plain[1][0].id


async def test_a_key_reused_for_another_request_is_refused(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.create_tenant("acme", "free", idempotency_key="k-1")
    with pytest.raises(BadInput) as caught:
        await store.create_tenant("acme", "premium", idempotency_key="k-1")
    assert caught.value.code == "idempotency_key_reused"
    assert len(await store.list_tenants()) == 1


async def test_a_repeated_key_issue_issues_one_key(make_store: StoreFactory) -> None:
    store = await make_store()
    tenant, _ = await store.create_tenant("acme", "free")
    issued = [await store.issue_key(tenant.id, idempotency_key="rotate-1") for _ in range(3)]
    assert issued[0] == issued[1] == issued[2]
    assert len(await store.list_keys(tenant.id)) == 2
    other, _ = await store.create_tenant("other", "free")
    assert (await store.issue_key(other.id, idempotency_key="rotate-1")) != issued[0]  # scoped by tenant


@pytest.mark.parametrize("bad", ["", "has space", "x" * 201, "é"])
def test_bad_idempotency_keys_are_bad_input(bad: str) -> None:
    with pytest.raises(BadInput) as caught:
        check_idempotency_key(bad)
    assert caught.value.code == "bad_idempotency_key"


@pytest.fixture
async def hung_store(own_redis: EmbeddedRedis) -> AsyncIterator[TenantStore]:
    gate = RedisGate.from_url(own_redis.url, timeout_s=0.2, probe_interval_s=0.1)
    store = TenantStore(gate, SECRET)
    await store.start()
    yield store
    await store.aclose()
    await gate.aclose()


async def test_an_ambiguous_create_is_reported_as_unknown_and_the_retry_finds_it(
    own_redis: EmbeddedRedis, hung_store: TenantStore
) -> None:
    store = hung_store
    await store.list_tenants()
    os.kill(own_redis.pid, signal.SIGSTOP)
    try:
        with pytest.raises(Unavailable) as caught:
            await store.create_tenant("during the hang", "free", idempotency_key="hang-1")
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)  # Redis now runs the script it had received
    assert caught.value.code == "outcome_unknown" and caught.value.status == 503
    assert "same Idempotency-Key is safe" in caught.value.message
    for _ in range(100):
        try:
            tenant, key = await store.create_tenant("during the hang", "free", idempotency_key="hang-1")
            break
        except Unavailable:
            await asyncio.sleep(0.05)  # until the probe has closed the breaker
    tenants = await store.list_tenants()
    assert [t.id for t in tenants] == [tenant.id]  # applied once, by the first attempt
    assert await store.resolve_key(key.api_key) == tenant
