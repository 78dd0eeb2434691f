"""Tenants and API keys in Redis, with a local key cache kept honest by pub/sub.

Hot path: :meth:`TenantStore.resolve_key` answers from the in-process cache while the entry is younger
than ``cache_ttl_s``; otherwise it costs one Redis round trip (one Lua script). Every admin write
publishes the tenant id on the invalidation channel inside its own script; every store subscribes and
drops that tenant's cached keys, so a revocation or a tier/focus change reaches all replicas in
milliseconds, and within ``cache_ttl_s`` even if a message were lost.

Redis outage policy:

- Keys already resolved by this replica keep resolving from the cache (fresh or stale) for at most
  ``grace_s`` seconds after the outage was first seen; after that they fail with 503.
- Unknown keys (not in the cache) fail closed: :class:`Unavailable` (503 ``dependency_unavailable``,
  ``retry_after``), never a guess. Malformed keys are refused with 401 without touching Redis.
- Writes go to Redis first and touch the cache only after Redis acknowledged them; a write that cannot
  reach Redis raises :class:`Unavailable` and was not applied (a timeout after sending leaves its
  outcome unknown: re-read before retrying). Each write is one atomic script, so none is half applied.
- While down, at most one probe per ``probe_interval_s`` goes to Redis; other lookups answer at once.
- Recovery is automatic: the listener resubscribes, and the cache is cleared on every reconnect and at
  the end of every outage, because invalidations published meanwhile may have been missed.
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from service.errors import Unauthorized
from service.store import scripts
from service.store.cache import KeyCache
from service.store.connection import REDIS_ERRORS, make_redis, unavailable
from service.store.invalidation import InvalidationListener
from service.store.keys import looks_like_key
from service.store.models import Tenant
from service.store.records import TenantRecords


class TenantStore(TenantRecords):
    """Tenants, keys and focus preferences (see :class:`TenantRecords`), plus the cached hot path.

    Call :meth:`start` (or use ``async with``) to run the invalidation listener; :meth:`aclose` stops
    it and leaves ``redis`` open unless the store made it (:meth:`from_url`).
    """

    def __init__(
        self,
        redis: Redis,
        secret: bytes,
        *,
        namespace: str = "aim",
        cache_ttl_s: float = 5.0,
        grace_s: float = 60.0,
        probe_interval_s: float = 1.0,
        max_cached_keys: int = 100_000,
    ) -> None:
        super().__init__(redis, secret, namespace=namespace, probe_interval_s=probe_interval_s)
        self._owns_redis = False
        self._cache = KeyCache(cache_ttl_s, max_cached_keys)
        self.grace_s = grace_s
        self._listener = InvalidationListener(
            redis,
            self._layout.channel,
            on_message=self._cache.drop_tenant,
            on_reconnect=self._cache.clear,
            health=self.health,
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        secret: bytes,
        *,
        namespace: str = "aim",
        cache_ttl_s: float = 5.0,
        grace_s: float = 60.0,
        probe_interval_s: float = 1.0,
    ) -> TenantStore:
        """A store over its own :func:`make_redis` client, which :meth:`aclose` closes too."""
        store = cls(
            make_redis(url),
            secret,
            namespace=namespace,
            cache_ttl_s=cache_ttl_s,
            grace_s=grace_s,
            probe_interval_s=probe_interval_s,
        )
        store._owns_redis = True
        return store

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
        """Stop the listener; close the client too if :meth:`from_url` made it."""
        await self._listener.stop()
        if self._owns_redis:
            await self._redis.aclose()

    close = aclose

    async def __aenter__(self) -> TenantStore:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def ping(self) -> bool:
        """True when Redis answers PING now (for ``/readyz``); updates the outage state either way."""
        try:
            await self._redis.ping()
        except REDIS_ERRORS as exc:
            self.health.failed(exc)
            return False
        self._recovered()
        return True

    async def resolve_key(self, api_key: str) -> Tenant:
        """The tenant owning ``api_key``. Raises Unauthorized (unknown, revoked, malformed) or Unavailable."""
        if not looks_like_key(api_key):
            raise Unauthorized("unknown or revoked API key")
        digest = self._hasher.digest(api_key)
        now = time.monotonic()
        tenant = self._cache.fresh(digest, now)
        if tenant is not None:
            return tenant
        if self.health.should_try(now):
            generation = self._cache.generation
            try:
                reply = await self._scripts["resolve"](
                    keys=[self._layout.key(digest)], args=[self._layout.tenant_prefix]
                )
            except REDIS_ERRORS as exc:
                self.health.failed(exc)
            else:
                self._recovered()
                if not reply:
                    raise Unauthorized("unknown or revoked API key")
                tenant = scripts.decode_tenant(scripts.pairs(reply))
                self._cache.put(digest, tenant, now, generation)
                return tenant
        down_for = self.health.down_for(now)
        stale = self._cache.stale(digest)
        if stale is not None and down_for is not None and down_for <= self.grace_s:
            return stale
        raise unavailable("API key verification", self.health.probe_interval_s)

    def _recovered(self) -> None:
        if self.health.ok():
            self._cache.clear()

    def _changed(self, tenant_id: str) -> None:
        self._cache.drop_tenant(tenant_id)
