"""The in-process cache of resolved API keys: digest -> tenant, fresh for ``ttl_s`` seconds.

Stale entries are kept (up to ``max_entries``, oldest evicted first) because the outage policy serves
them while Redis is down: the pub/sub listener keeps them honest while it is connected, and the cache
is cleared whenever it reconnects. Every invalidation bumps :attr:`KeyCache.generation`; a lookup that
started before an invalidation must not store its possibly outdated answer, which :meth:`put` enforces.
Indexed by the key's HMAC digest, never by the key; the digest is keyed by the server secret, so no
client can steer dictionary lookups towards a chosen stored digest.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.store.models import Tenant


@dataclass(frozen=True, slots=True)
class _Entry:
    tenant: Tenant
    fetched_at: float


class KeyCache:
    """Not thread-safe; used from one event loop. Times are ``time.monotonic()`` seconds."""

    def __init__(self, ttl_s: float, max_entries: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[str, _Entry] = {}
        self._by_tenant: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def fresh(self, digest: str, now: float) -> Tenant | None:
        """The tenant if Redis confirmed it less than ``ttl_s`` ago."""
        entry = self._entries.get(digest)
        if entry is None or now - entry.fetched_at >= self.ttl_s:
            return None
        return entry.tenant

    def stale(self, digest: str) -> Tenant | None:
        """The tenant of any entry, fresh or not (for the outage grace period only)."""
        entry = self._entries.get(digest)
        return None if entry is None else entry.tenant

    def put(self, digest: str, tenant: Tenant, fetched_at: float, generation: int) -> bool:
        """Store ``tenant`` unless an invalidation happened since ``generation`` was read."""
        if generation != self.generation:
            return False
        self._entries.pop(digest, None)  # re-inserting moves it to the young end of the dict
        self._entries[digest] = _Entry(tenant, fetched_at)
        self._by_tenant.setdefault(tenant.id, set()).add(digest)
        while len(self._entries) > self.max_entries:
            self._evict(next(iter(self._entries)))
        return True

    def drop_tenant(self, tenant_id: str) -> None:
        """Forget every key of ``tenant_id`` (its keys, tier, focus or existence changed)."""
        self.generation += 1
        for digest in self._by_tenant.pop(tenant_id, ()):
            self._entries.pop(digest, None)

    def clear(self) -> None:
        """Forget everything (after a reconnect, invalidations may have been missed)."""
        self.generation += 1
        self._entries.clear()
        self._by_tenant.clear()

    def _evict(self, digest: str) -> None:
        entry = self._entries.pop(digest)
        keys = self._by_tenant.get(entry.tenant.id)
        if keys is not None:
            keys.discard(digest)
            if not keys:
                del self._by_tenant[entry.tenant.id]
