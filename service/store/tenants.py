"""Tenants and API keys in Redis, with a local key cache kept honest by pub/sub.

Hot path: :meth:`TenantStore.resolve_key` answers from the in-process cache while the entry is younger
than ``cache_ttl_s``; otherwise it costs one Redis round trip (one Lua script). Every admin write
publishes the tenant id on the invalidation channel inside its own script; every store subscribes and
drops that tenant's cached keys, so a revocation or a tier/focus change reaches all replicas in
milliseconds, and within ``cache_ttl_s`` even if a message were lost.

Redis outage policy (every call goes through the :class:`RedisGate`: bounded, breaker-guarded):

- Keys already resolved by this replica keep resolving from the cache (fresh or stale) for at most
  ``grace_s`` seconds after the outage was first seen; after that they fail with 503. A stale key whose
  refresh found every Redis connection busy is served too: Redis is up, so invalidations still arrive.
- Unknown keys (not in the cache) fail closed: :class:`Unavailable` (503 ``dependency_unavailable``,
  ``retry_after``), never a guess. Malformed keys are refused with 401 without touching Redis.
- Concurrent lookups of one key share one Redis call, so a burst on a cold replica costs one round trip
  per distinct key.
- Writes go to Redis first and touch the cache only after Redis acknowledged them; a write that never
  reached Redis raises 503 ``dependency_unavailable`` and was not applied; one sent before Redis stopped
  answering raises 503 ``outcome_unknown``. Each write is one atomic script, so none is half applied.
- Recovery is automatic: the listener resubscribes, and the cache is cleared on every reconnect and at
  the end of every outage, because invalidations published meanwhile may have been missed.
"""

from __future__ import annotations

import asyncio
import time

from service.errors import Unauthorized
from service.store import scripts
from service.store.budget import unbudgeted, wait_within
from service.store.cache import KeyCache
from service.store.connection import RedisUnavailable
from service.store.gate import RedisGate
from service.store.invalidation import InvalidationListener
from service.store.keys import looks_like_key
from service.store.models import Tenant
from service.store.records import TenantRecords


class TenantStore(TenantRecords):
    """Tenants, keys and focus preferences (see :class:`TenantRecords`), plus the cached hot path.

    Call :meth:`start` (or use ``async with``) to run the invalidation listener; :meth:`aclose` stops
    it and leaves the gate open (its owner closes it).
    """

    def __init__(
        self,
        gate: RedisGate,
        secret: bytes,
        *,
        namespace: str = "aim",
        cache_ttl_s: float = 5.0,
        grace_s: float = 60.0,
        max_cached_keys: int = 100_000,
    ) -> None:
        super().__init__(gate, secret, namespace=namespace)
        self._cache = KeyCache(cache_ttl_s, max_cached_keys)
        self._inflight: dict[str, asyncio.Future[Tenant | None]] = {}
        self.grace_s = grace_s
        gate.on_recovery(self._cache.clear)
        self._listener = InvalidationListener(
            gate.redis,
            self._layout.channel,
            on_message=self._cache.drop_tenant,
            on_reconnect=self._cache.clear,
            gate=gate,
        )

    def __repr__(self) -> str:
        return f"TenantStore(namespace={self._layout.ns!r}, cached_keys={len(self._cache)})"

    async def start(self, wait_s: float = 2.0) -> None:
        """Start the listener and wait up to ``wait_s`` for its first subscription (not required)."""
        self._listener.start()
        await self.wait_subscribed(wait_s)

    async def wait_subscribed(self, timeout_s: float) -> bool:
        """True once the invalidation listener is subscribed, False after ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._listener.subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Stop the listener."""
        await self._listener.stop()

    close = aclose

    async def __aenter__(self) -> TenantStore:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def ping(self) -> bool:
        """True when Redis answers PING now (for ``/readyz``); False at once while the breaker is open."""
        return await self.gate.ping()

    async def resolve_key(self, api_key: str) -> Tenant:
        """The tenant owning ``api_key``. Raises Unauthorized (unknown, revoked, malformed) or Unavailable."""
        if not looks_like_key(api_key):
            raise Unauthorized("unknown or revoked API key")
        digest = self._hasher.digest(api_key)
        now = time.monotonic()
        tenant = self._cache.fresh(digest, now)
        if tenant is not None:
            return tenant
        try:
            tenant = await self._lookup(digest)
        except RedisUnavailable as exc:
            stale = self._cache.stale(digest)
            down_for = self.gate.down_for(now)
            # Busy, or failed before the breaker opened, or within the grace: a known key keeps working.
            if stale is not None and (down_for is None or down_for <= self.grace_s):
                return stale
            raise exc.as_error("API key verification") from None
        if tenant is None:
            raise Unauthorized("unknown or revoked API key")
        return tenant

    async def _lookup(self, digest: str) -> Tenant | None:
        """One Redis lookup per digest at a time: concurrent callers await the same one, each for at most
        its own request's Redis budget (plus one connection wait); the lookup itself is charged to none."""
        pending = self._inflight.get(digest)
        if pending is None:
            pending = unbudgeted(self._fetch(digest))
            self._inflight[digest] = pending
            pending.add_done_callback(lambda done: self._settled(digest, done))
        # Shielded: one caller giving up (a client disconnect) does not cancel the others' lookup.
        return await wait_within(asyncio.shield(pending), self.gate.slot_wait_s)

    def _settled(self, digest: str, done: asyncio.Future[Tenant | None]) -> None:
        if self._inflight.get(digest) is done:
            del self._inflight[digest]
        if not done.cancelled():
            done.exception()  # retrieved here, so an error nobody awaited any more is not logged as lost

    async def _fetch(self, digest: str) -> Tenant | None:
        generation, fetched_at = self._cache.generation, time.monotonic()
        for attempt in (1, 2):  # a read: one more try when the first found no slot or time (back-pressure)
            try:
                reply = await self.gate.call(
                    lambda: self._scripts["resolve"](
                        keys=[self._layout.key(digest)], args=[self._layout.tenant_prefix]
                    ),
                    "resolve_key",
                )
                break
            except RedisUnavailable as exc:
                if not exc.busy or attempt == 2:
                    raise
        if not reply:
            return None
        tenant = scripts.decode_tenant(scripts.pairs(reply))
        self._cache.put(digest, tenant, fetched_at, generation)
        return tenant

    def _changed(self, tenant_id: str) -> None:
        self._cache.drop_tenant(tenant_id)
