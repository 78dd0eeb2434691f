"""The local key cache: TTL, generations (no stale write-back after an invalidation), bounds."""

from __future__ import annotations

from datetime import UTC, datetime

from service.store.cache import KeyCache
from service.store.models import Tenant


def _tenant(i: int) -> Tenant:
    return Tenant(id=f"ten_{i:016x}", name=f"t{i}", tier="free", created_at=datetime.now(UTC))


def test_fresh_for_ttl_then_only_stale() -> None:
    cache = KeyCache(ttl_s=5.0)
    t = _tenant(1)
    assert cache.put("d1", t, fetched_at=100.0, generation=cache.generation)
    assert cache.fresh("d1", 104.9) == t
    assert cache.fresh("d1", 105.0) is None
    assert cache.stale("d1") == t
    assert cache.fresh("unknown", 100.0) is None and cache.stale("unknown") is None


def test_lookup_started_before_an_invalidation_is_not_stored() -> None:
    cache = KeyCache(ttl_s=5.0)
    t = _tenant(1)
    generation = cache.generation  # a Redis lookup starts...
    cache.drop_tenant(t.id)  # ...an invalidation arrives meanwhile...
    assert not cache.put("d1", t, 100.0, generation)  # ...so its answer may be outdated
    assert cache.stale("d1") is None
    assert cache.put("d1", t, 100.0, cache.generation)


def test_drop_tenant_drops_all_its_keys_only() -> None:
    cache = KeyCache(ttl_s=5.0)
    t1, t2 = _tenant(1), _tenant(2)
    for digest, t in (("a", t1), ("b", t1), ("c", t2)):
        cache.put(digest, t, 100.0, cache.generation)
    cache.drop_tenant(t1.id)
    assert (cache.stale("a"), cache.stale("b"), cache.stale("c")) == (None, None, t2)
    cache.clear()
    assert len(cache) == 0


def test_bounded_oldest_evicted_first() -> None:
    cache = KeyCache(ttl_s=5.0, max_entries=3)
    for i in range(5):
        cache.put(f"d{i}", _tenant(i), 100.0 + i, cache.generation)
    assert len(cache) == 3
    assert [cache.stale(f"d{i}") is not None for i in range(5)] == [False, False, True, True, True]
    cache.drop_tenant(_tenant(0).id)  # an evicted tenant's index entry is gone too: nothing to drop
    assert len(cache) == 3
