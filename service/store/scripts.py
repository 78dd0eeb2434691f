"""Redis layout of the tenant store, its Lua scripts, and the codec between hashes and models.

Layout under a namespace ``ns`` (default ``aim``):

- ``ns:tenant:<tenant_id>`` hash ``id, name, tier, focus (JSON or ""), created_at (ISO 8601)``
- ``ns:tenants`` set of tenant ids
- ``ns:tkeys:<tenant_id>`` hash ``key_id -> digest``
- ``ns:key:<digest>`` hash ``tenant_id, key_id, created_at``; ``digest`` = hex HMAC-SHA256 of the key
- ``ns:invalidate`` pub/sub channel; each message is a tenant id whose cached keys must be dropped
- ``ns:idem:<digest>`` string: the record of an idempotent create (JSON, with a TTL; see
  :mod:`service.store.idempotency`), written by the create's own script

Every write is one Lua script, so it is atomic (all or nothing, also across a crash with AOF on), and
writes that change what a key resolves to PUBLISH the invalidation inside the same script. Scripts
build some key names from stored values, so they need a single Redis (or primary), not a Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.store.models import FocusPref, KeyInfo, Tenant

# KEYS: tenant hash, tenants set, tenant keys, key hash, idempotency record.
# ARGV: tenant id, name, tier, created_at, key id, digest, record ('' = not idempotent), record TTL.
# -> the stored record of an earlier create with the same idempotency key (nothing written), else 1.
CREATE = """
if ARGV[7] ~= '' then
  local prev = redis.call('GET', KEYS[5])
  if prev then return prev end
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'tier', ARGV[3], 'focus', '',
           'created_at', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
redis.call('HSET', KEYS[4], 'tenant_id', ARGV[1], 'key_id', ARGV[5], 'created_at', ARGV[4])
if ARGV[7] ~= '' then redis.call('SET', KEYS[5], ARGV[7], 'EX', ARGV[8]) end
return 1
"""

# KEYS: key hash. ARGV: tenant hash prefix. -> flat HGETALL of the tenant, or nil.
RESOLVE = """
local t = redis.call('HGET', KEYS[1], 'tenant_id')
if not t then return false end
return redis.call('HGETALL', ARGV[1] .. t)
"""

# KEYS: tenant hash. ARGV: channel, tenant id, field, value, ... -> flat HGETALL after, or nil.
UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: tenant hash, tenant keys, tenants set. ARGV: channel, tenant id, key hash prefix.
DELETE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, d in ipairs(redis.call('HVALS', KEYS[2])) do redis.call('DEL', ARGV[3] .. d) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""

# KEYS: tenant hash, tenant keys, key hash, idempotency record.
# ARGV: tenant id, key id, digest, created_at, record ('' = not idempotent), record TTL.
# -> 0 (no such tenant), the stored record of an earlier issue with the same idempotency key, or 1.
ISSUE = """
if ARGV[5] ~= '' then
  local prev = redis.call('GET', KEYS[4])
  if prev then return prev end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], 'tenant_id', ARGV[1], 'key_id', ARGV[2], 'created_at', ARGV[4])
if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[6]) end
return 1
"""

# KEYS: tenant keys. ARGV: channel, tenant id, key id, key hash prefix.
REVOKE = """
local d = redis.call('HGET', KEYS[1], ARGV[3])
if not d then return 0 end
redis.call('DEL', ARGV[4] .. d)
redis.call('HDEL', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""


class Layout:
    """Key names under one namespace."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self.tenants = f"{namespace}:tenants"
        self.channel = f"{namespace}:invalidate"
        self.tenant_prefix = f"{namespace}:tenant:"
        self.key_prefix = f"{namespace}:key:"

    def tenant(self, tenant_id: str) -> str:
        return self.tenant_prefix + tenant_id

    def tkeys(self, tenant_id: str) -> str:
        return f"{self.ns}:tkeys:{tenant_id}"

    def key(self, digest: str) -> str:
        return self.key_prefix + digest

    def request(self, request_id: str) -> str:
        """What a classification request answered (:mod:`service.store.requests`)."""
        return f"{self.ns}:req:{request_id}"

    def feedback(self, request_id: str) -> str:
        """The indices of that request already labelled."""
        return f"{self.ns}:req:{request_id}:fb"

    def idem(self, digest: str) -> str:
        """The idempotency record of a create (``digest`` = ``"-"`` for the unused slot of a plain one)."""
        return f"{self.ns}:idem:{digest}"


def pairs(flat: Sequence[Any]) -> dict[str, str]:
    """A Lua ``HGETALL`` reply (flat list) as a dict."""
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def as_str_dict(reply: Any) -> dict[str, str]:
    """An ``HGETALL`` reply of a ``decode_responses=True`` client, typed."""
    return {str(k): str(v) for k, v in reply.items()}


def encode_focus(focus: FocusPref | None) -> str:
    return "" if focus is None else focus.model_dump_json()


def decode_tenant(fields: dict[str, str]) -> Tenant:
    focus = fields.get("focus", "")
    return Tenant(
        id=fields["id"],
        name=fields["name"],
        tier=fields["tier"],
        focus=FocusPref.model_validate(json.loads(focus)) if focus else None,
        created_at=datetime.fromisoformat(fields["created_at"]),
    )


def decode_key(fields: dict[str, str]) -> KeyInfo:
    return KeyInfo(
        key_id=fields["key_id"],
        tenant_id=fields["tenant_id"],
        created_at=datetime.fromisoformat(fields["created_at"]),
    )
