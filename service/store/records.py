"""Tenant and key records in Redis: the admin side of the store, without any cache.

Every write is one atomic Lua script (see :mod:`service.store.scripts`) that also publishes the
invalidation, and is reported to the caller only after Redis acknowledged it; a Redis failure raises
:class:`Unavailable` (503 ``dependency_unavailable``). Unknown tenant or key ids raise :class:`NotFound`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

from redis.asyncio import Redis

from service.errors import NotFound
from service.store import scripts
from service.store.connection import REDIS_ERRORS, RedisHealth, unavailable
from service.store.keys import KeyHasher, new_api_key, new_key_id, new_tenant_id
from service.store.models import (
    KEY_ID_RE,
    TENANT_ID_RE,
    UNSET,
    FocusPref,
    IssuedKey,
    KeyInfo,
    Tenant,
    Unset,
    check_name,
    check_tier,
)

T = TypeVar("T")


class TenantRecords:
    """CRUD of tenants and keys over ``redis`` (``decode_responses=True``); ``secret`` keys the digests."""

    def __init__(
        self, redis: Redis, secret: bytes, *, namespace: str = "aim", probe_interval_s: float = 1.0
    ) -> None:
        self._redis = redis
        self._hasher = KeyHasher(secret)
        self._layout = scripts.Layout(namespace)
        self.health = RedisHealth(f"tenant store {namespace!r}", probe_interval_s)
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

    @property
    def redis(self) -> Redis:
        """The client (for other Redis users of the service, e.g. the rate limiter)."""
        return self._redis

    # --- tenants ------------------------------------------------------------------------------------

    async def create_tenant(self, name: str, tier: str) -> tuple[Tenant, IssuedKey]:
        """Create a tenant with its first key. ``tier`` must be checked against the tiers by the caller."""
        created = datetime.now(UTC)
        tenant = Tenant(
            id=new_tenant_id(),
            name=check_name(name),
            tier=check_tier(tier),
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
        focus: FocusPref | Unset | None = UNSET,
    ) -> Tenant:
        """Change the given fields (``focus=None`` clears it) and return the tenant as now stored."""
        key = self._tenant_key(tenant_id)
        changes: list[str] = []
        if name is not None:
            changes += ["name", check_name(name)]
        if tier is not None:
            changes += ["tier", check_tier(tier)]
        if focus is not UNSET:
            changes += ["focus", scripts.encode_focus(focus)]
        reply = await self._call(
            "updating a tenant",
            self._scripts["update"](keys=[key], args=[self._layout.channel, tenant_id, *changes]),
        )
        if not reply:
            raise NotFound(f"no tenant {tenant_id!r}")
        self._changed(tenant_id)
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
        self._changed(tenant_id)

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
        self._tenant_key(tenant_id)
        if not KEY_ID_RE.match(key_id):
            raise NotFound(f"no key {key_id[:64]!r} for tenant {tenant_id!r}")
        done = await self._call(
            "revoking a key",
            self._scripts["revoke"](
                keys=[lay.tkeys(tenant_id)], args=[lay.channel, tenant_id, key_id, lay.key_prefix]
            ),
        )
        if not done:
            raise NotFound(f"no key {key_id!r} for tenant {tenant_id!r}")
        self._changed(tenant_id)

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
        """Hook: a Redis call succeeded (subclasses drop caches at the end of an outage)."""
        self.health.ok()

    def _changed(self, tenant_id: str) -> None:
        """Hook: a write to ``tenant_id`` was acknowledged by Redis."""
