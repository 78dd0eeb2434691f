"""Tenant and key records in Redis: the admin side of the store, without any cache.

Every write is one atomic Lua script (see :mod:`service.store.scripts`) that also publishes the
invalidation, and is reported to the caller only after Redis acknowledged it. Every call goes through
the :class:`RedisGate`; a failure raises :class:`Unavailable`: ``dependency_unavailable`` (not sent:
nothing applied), ``outcome_unknown`` (a write sent before Redis stopped answering) or ``overloaded``
(no connection free in time). Unknown tenant or key ids raise :class:`NotFound`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from service.errors import NotFound
from service.store import scripts
from service.store.connection import RedisUnavailable
from service.store.gate import RedisGate
from service.store.idempotency import IDEMPOTENCY_TTL_S, IdempotentIds, encode_record, replayed_created_at
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
    """CRUD of tenants and keys through ``gate``; ``secret`` keys the digests."""

    def __init__(self, gate: RedisGate, secret: bytes, *, namespace: str = "aim") -> None:
        self.gate = gate
        redis = self._redis = gate.redis
        self._hasher = KeyHasher(secret)
        self._idempotent = IdempotentIds(secret)
        self._layout = scripts.Layout(namespace)
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

    # --- tenants ------------------------------------------------------------------------------------

    async def create_tenant(
        self, name: str, tier: str, *, idempotency_key: str | None = None
    ) -> tuple[Tenant, IssuedKey]:
        """Create a tenant with its first key. ``tier`` must be checked against the tiers by the caller.

        With ``idempotency_key``, a repeat within a day returns the first create's tenant and key and
        writes nothing (:mod:`service.store.idempotency`); with other fields it raises BadInput.
        """
        request = {"name": check_name(name), "tier": check_tier(tier)}
        created = datetime.now(UTC).isoformat()
        if idempotency_key is None:
            tenant_id, key_id, api_key, idem, record = new_tenant_id(), new_key_id(), new_api_key(), "-", ""
        else:
            d = self._idempotent.derive("create-tenant", idempotency_key)
            tenant_id, key_id, api_key, idem = d.tenant_id, d.key_id, d.api_key, d.digest
            record = encode_record(request, created)
        digest = self._hasher.digest(api_key)
        lay = self._layout
        reply = await self._write(
            "creating a tenant",
            lambda: self._scripts["create"](
                keys=[
                    lay.tenant(tenant_id),
                    lay.tenants,
                    lay.tkeys(tenant_id),
                    lay.key(digest),
                    lay.idem(idem),
                ],
                args=[tenant_id, *request.values(), created, key_id, digest, record, IDEMPOTENCY_TTL_S],
            ),
            idempotent=idempotency_key is not None,
        )
        if isinstance(reply, str):  # a repeat: the first create's outcome
            created = replayed_created_at(reply, request)
        tenant = Tenant(
            id=tenant_id,
            name=request["name"],
            tier=request["tier"],
            created_at=datetime.fromisoformat(created),
        )
        return tenant, IssuedKey(key_id=key_id, api_key=api_key)

    async def get_tenant(self, tenant_id: str) -> Tenant:
        key = self._tenant_key(tenant_id)
        fields = await self._call("reading a tenant", lambda: self._redis.hgetall(key))
        if not fields:
            raise NotFound(f"no tenant {tenant_id!r}")
        return scripts.decode_tenant(scripts.as_str_dict(fields))

    async def list_tenants(self) -> list[Tenant]:
        """All tenants, oldest first."""
        ids = await self._call("listing tenants", lambda: self._redis.smembers(self._layout.tenants))
        pipe = self._redis.pipeline(transaction=False)
        for tenant_id in sorted(ids):
            pipe.hgetall(self._layout.tenant(str(tenant_id)))
        rows = await self._call("listing tenants", pipe.execute)
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
        reply = await self._write(
            "updating a tenant",
            lambda: self._scripts["update"](keys=[key], args=[self._layout.channel, tenant_id, *changes]),
        )
        if not reply:
            raise NotFound(f"no tenant {tenant_id!r}")
        self._changed(tenant_id)
        return scripts.decode_tenant(scripts.pairs(reply))

    async def delete_tenant(self, tenant_id: str) -> None:
        """Delete the tenant and revoke all its keys."""
        lay = self._layout
        done = await self._write(
            "deleting a tenant",
            lambda: self._scripts["delete"](
                keys=[self._tenant_key(tenant_id), lay.tkeys(tenant_id), lay.tenants],
                args=[lay.channel, tenant_id, lay.key_prefix],
            ),
        )
        if not done:
            raise NotFound(f"no tenant {tenant_id!r}")
        self._changed(tenant_id)

    # --- keys ---------------------------------------------------------------------------------------

    async def issue_key(self, tenant_id: str, *, idempotency_key: str | None = None) -> IssuedKey:
        """A new key for the tenant (rotation); its older keys stay valid until revoked. With
        ``idempotency_key``, a repeat within a day returns the same key and issues none."""
        tenant_key = self._tenant_key(tenant_id)
        created = datetime.now(UTC).isoformat()
        if idempotency_key is None:
            key_id, api_key, idem, record = new_key_id(), new_api_key(), "-", ""
        else:
            d = self._idempotent.derive(f"issue-key:{tenant_id}", idempotency_key)
            key_id, api_key, idem = d.key_id, d.api_key, d.digest
            record = encode_record({"tenant_id": tenant_id}, created)
        digest = self._hasher.digest(api_key)
        lay = self._layout
        done = await self._write(
            "issuing a key",
            lambda: self._scripts["issue"](
                keys=[tenant_key, lay.tkeys(tenant_id), lay.key(digest), lay.idem(idem)],
                args=[tenant_id, key_id, digest, created, record, IDEMPOTENCY_TTL_S],
            ),
            idempotent=idempotency_key is not None,
        )
        if not done:
            raise NotFound(f"no tenant {tenant_id!r}")
        return IssuedKey(key_id=key_id, api_key=api_key)

    async def revoke_key(self, tenant_id: str, key_id: str) -> None:
        """Revoke one key; every replica refuses it within milliseconds (at worst ``cache_ttl_s``)."""
        lay = self._layout
        self._tenant_key(tenant_id)
        if not KEY_ID_RE.match(key_id):
            raise NotFound(f"no key {key_id[:64]!r} for tenant {tenant_id!r}")
        done = await self._write(
            "revoking a key",
            lambda: self._scripts["revoke"](
                keys=[lay.tkeys(tenant_id)], args=[lay.channel, tenant_id, key_id, lay.key_prefix]
            ),
        )
        if not done:
            raise NotFound(f"no key {key_id!r} for tenant {tenant_id!r}")
        self._changed(tenant_id)

    async def list_keys(self, tenant_id: str) -> list[KeyInfo]:
        """The tenant's live keys, oldest first (key ids and dates only)."""
        await self.get_tenant(tenant_id)
        tkeys = self._layout.tkeys(tenant_id)
        digests = await self._call("listing keys", lambda: self._redis.hvals(tkeys))
        pipe = self._redis.pipeline(transaction=False)
        for digest in digests:
            pipe.hgetall(self._layout.key(str(digest)))
        rows = await self._call("listing keys", pipe.execute)
        keys = [scripts.decode_key(scripts.as_str_dict(row)) for row in rows if row]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    # --- helpers ------------------------------------------------------------------------------------

    def _tenant_key(self, tenant_id: str) -> str:
        if not TENANT_ID_RE.match(tenant_id):
            raise NotFound(f"no tenant {tenant_id[:64]!r}")
        return self._layout.tenant(tenant_id)

    async def _call(
        self, what: str, make: Callable[[], Awaitable[T]], *, write: bool = False, idempotent: bool = False
    ) -> T:
        try:
            return await self.gate.call(make, "admin")
        except RedisUnavailable as exc:
            raise exc.as_error(what.capitalize(), write=write, idempotent=idempotent) from None

    async def _write(self, what: str, make: Callable[[], Awaitable[T]], *, idempotent: bool = False) -> T:
        return await self._call(what, make, write=True, idempotent=idempotent)

    def _changed(self, tenant_id: str) -> None:
        """Hook: a write to ``tenant_id`` was acknowledged by Redis."""
