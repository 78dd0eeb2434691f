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
from collections.abc import Awaitable
from datetime import UTC, datetime
from enum import Enum
from typing import Literal, TypeVar

from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis

from service.errors import BadInput, NotFound, Unauthorized
from service.store import scripts
from service.store.cache import KeyCache
from service.store.connection import REDIS_ERRORS, RedisHealth, unavailable
from service.store.invalidation import InvalidationListener
from service.store.keys import KeyHasher, looks_like_key, new_api_key, new_key_id, new_tenant_id
from service.store.models import (
    KEY_ID_RE,
    TENANT_ID_RE,
    FocusPref,
    IssuedKey,
    KeyInfo,
    Tenant,
    TenantName,
    TierName,
)

T = TypeVar("T")


class _Unset(Enum):
    UNSET = 0


UNSET: Literal[_Unset.UNSET] = _Unset.UNSET
"""Marks an :meth:`TenantStore.update_tenant` argument as "leave unchanged" (``None`` clears focus)."""


class TenantStore:
    """Tenants, keys and focus preferences over ``redis`` (a ``decode_responses=True`` client).

    ``secret`` keys the key digests. Call :meth:`start` (or use ``async with``) to run the invalidation
    listener; :meth:`aclose` stops it but leaves ``redis`` open (its owner closes it).
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
        self._redis = redis
        self._hasher = KeyHasher(secret)
        self._layout = scripts.Layout(namespace)
        self._cache = KeyCache(cache_ttl_s, max_cached_keys)
        self.grace_s = grace_s
        self.health = RedisHealth(f"tenant store {namespace!r}", probe_interval_s)
        self._listener = InvalidationListener(
            redis,
            self._layout.channel,
            on_message=self._cache.drop_tenant,
            on_reconnect=self._cache.clear,
            health=self.health,
        )
        self._scripts = {
            name: redis.register_script(text)
            for name, text in (
                ("create", scripts.CREATE),
                ("resolve", scripts.RESOLVE),
                ("update", scripts.UPDATE),
                ("delete", scripts.DELETE),
                ("issue", scripts.ISSUE),
                ("revoke", scripts.REVOKE),
            )
        }

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
        await self._listener.stop()

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

    # --- hot path -----------------------------------------------------------------------------------

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

    # --- tenants ------------------------------------------------------------------------------------

    async def create_tenant(self, name: str, tier: str) -> tuple[Tenant, IssuedKey]:
        """Create a tenant with its first key. ``tier`` must be checked against the tiers by the caller."""
        created = datetime.now(UTC)
        tenant = Tenant(
            id=new_tenant_id(),
            name=_check(_NAME, name, "name"),
            tier=_check(_TIER, tier, "tier"),
            created_at=created,
        )
        issued = IssuedKey(key_id=new_key_id(), api_key=new_api_key())
        digest = self._hasher.digest(issued.api_key)
        lay = self._layout
        await self._call(
            "creating a tenant",
            self._scripts["create"](
                keys=[lay.tenant(tenant.id), lay.tenants, lay.tkeys(tenant.id), lay.key(digest)],
                args=[tenant.id, tenant.name, tenant.tier, created.isoformat(), issued.key_id, digest],
            ),
        )
        return tenant, issued

    async def get_tenant(self, tenant_id: str) -> Tenant:
        fields = await self._call("reading a tenant", self._redis.hgetall(self._tenant_key(tenant_id)))
        if not fields:
            raise NotFound(f"no tenant {tenant_id!r}")
        return scripts.decode_tenant(scripts.as_str_dict(fields))

    async def list_tenants(self) -> list[Tenant]:
        """All tenants, oldest first."""
        ids = await self._call("listing tenants", self._redis.smembers(self._layout.tenants))
        pipe = self._redis.pipeline(transaction=False)
        for tenant_id in sorted(ids):
            pipe.hgetall(self._layout.tenant(str(tenant_id)))
        rows = await self._call("listing tenants", pipe.execute())
        tenants = [scripts.decode_tenant(scripts.as_str_dict(row)) for row in rows if row]
        return sorted(tenants, key=lambda t: (t.created_at, t.id))

    async def update_tenant(
        self,
        tenant_id: str,
        *,
        name: str | None = None,
        tier: str | None = None,
        focus: FocusPref | Literal[_Unset.UNSET] | None = UNSET,
    ) -> Tenant:
        """Change the given fields (``focus=None`` clears it) and return the tenant as now stored."""
        key = self._tenant_key(tenant_id)
        changes: list[str] = []
        if name is not None:
            changes += ["name", _check(_NAME, name, "name")]
        if tier is not None:
            changes += ["tier", _check(_TIER, tier, "tier")]
        if focus is not UNSET:
            changes += ["focus", scripts.encode_focus(focus)]
        reply = await self._call(
            "updating a tenant",
            self._scripts["update"](keys=[key], args=[self._layout.channel, tenant_id, *changes]),
        )
        if not reply:
            raise NotFound(f"no tenant {tenant_id!r}")
        self._cache.drop_tenant(tenant_id)
        return scripts.decode_tenant(scripts.pairs(reply))

    async def delete_tenant(self, tenant_id: str) -> None:
        """Delete the tenant and revoke all its keys."""
        lay = self._layout
        done = await self._call(
            "deleting a tenant",
            self._scripts["delete"](
                keys=[self._tenant_key(tenant_id), lay.tkeys(tenant_id), lay.tenants],
                args=[lay.channel, tenant_id, lay.key_prefix],
            ),
        )
        if not done:
            raise NotFound(f"no tenant {tenant_id!r}")
        self._cache.drop_tenant(tenant_id)

    # --- keys ---------------------------------------------------------------------------------------

    async def issue_key(self, tenant_id: str) -> IssuedKey:
        """A new key for the tenant (rotation); its older keys stay valid until revoked."""
        issued = IssuedKey(key_id=new_key_id(), api_key=new_api_key())
        digest = self._hasher.digest(issued.api_key)
        lay = self._layout
        done = await self._call(
            "issuing a key",
            self._scripts["issue"](
                keys=[self._tenant_key(tenant_id), lay.tkeys(tenant_id), lay.key(digest)],
                args=[tenant_id, issued.key_id, digest, datetime.now(UTC).isoformat()],
            ),
        )
        if not done:
            raise NotFound(f"no tenant {tenant_id!r}")
        return issued

    async def revoke_key(self, tenant_id: str, key_id: str) -> None:
        """Revoke one key; every replica refuses it within milliseconds (at worst ``cache_ttl_s``)."""
        lay = self._layout
        if not KEY_ID_RE.match(key_id):
            raise NotFound(f"no key {key_id!r} for tenant {tenant_id!r}")
        done = await self._call(
            "revoking a key",
            self._scripts["revoke"](
                keys=[lay.tkeys(tenant_id)], args=[lay.channel, tenant_id, key_id, lay.key_prefix]
            ),
        )
        if not done:
            raise NotFound(f"no key {key_id!r} for tenant {tenant_id!r}")
        self._cache.drop_tenant(tenant_id)

    async def list_keys(self, tenant_id: str) -> list[KeyInfo]:
        """The tenant's live keys, oldest first (key ids and dates only)."""
        await self.get_tenant(tenant_id)
        digests = await self._call("listing keys", self._redis.hvals(self._layout.tkeys(tenant_id)))
        pipe = self._redis.pipeline(transaction=False)
        for digest in digests:
            pipe.hgetall(self._layout.key(str(digest)))
        rows = await self._call("listing keys", pipe.execute())
        keys = [scripts.decode_key(scripts.as_str_dict(row)) for row in rows if row]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    # --- helpers ------------------------------------------------------------------------------------

    def _tenant_key(self, tenant_id: str) -> str:
        if not TENANT_ID_RE.match(tenant_id):
            raise NotFound(f"no tenant {tenant_id[:64]!r}")
        return self._layout.tenant(tenant_id)

    async def _call(self, what: str, pending: Awaitable[T]) -> T:
        try:
            result = await pending
        except REDIS_ERRORS as exc:
            self.health.failed(exc)
            raise unavailable(what.capitalize(), self.health.probe_interval_s) from None
        self._recovered()
        return result

    def _recovered(self) -> None:
        if self.health.ok():
            self._cache.clear()


_NAME: TypeAdapter[str] = TypeAdapter(TenantName)
_TIER: TypeAdapter[str] = TypeAdapter(TierName)


def _check(adapter: TypeAdapter[str], value: str, field: str) -> str:
    """Validate one caller-supplied field, turning a validation error into a 400 naming it."""
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise BadInput(f"invalid tenant {field}: {exc.errors()[0]['msg']}") from None
