"""Idempotent admin creates: the same ``Idempotency-Key`` never creates a second tenant or key.

A create sent with an idempotency key ``K`` gets its identity from ``K`` instead of from randomness:
``d = HMAC(k_idem, scope || K)`` (``k_idem`` derived from the server secret for this one purpose) gives
the tenant id, the key id and the API key. The write script stores a record under ``<ns>:idem:<d>``
in the same atomic step as the write, with a TTL of :data:`IDEMPOTENCY_TTL_S`; a retry finds the record
and is answered with the first outcome (the same ids and the same API key, re-derived, never stored),
without writing anything. So a retry after an ambiguous failure (``outcome_unknown``) is safe, and a
key reused with a different request body is refused. The record holds the request's fields and the
creation time: no secret. Clients should use random keys (a UUID): with the server secret, ``K`` is
enough to re-derive the API key it created.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from service.errors import BadInput
from service.store.keys import KEY_PREFIX

#: How long a create's idempotency record lives: retries within a day return the first outcome.
IDEMPOTENCY_TTL_S = 24 * 3600
MAX_IDEMPOTENCY_KEY_CHARS = 200
_PURPOSE = b"aimserve/idempotency/v1"


def check_idempotency_key(value: str) -> str:
    """The header's value when it is 1-200 visible ASCII characters; BadInput otherwise."""
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_CHARS or not all("!" <= c <= "~" for c in value):
        raise BadInput(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters "
            f"(got {len(value)} characters); a UUID is a good choice",
            code="bad_idempotency_key",
        )
    return value


@dataclass(frozen=True, slots=True)
class Derived:
    """The identity of one idempotent create: record digest, tenant id, key id and API key."""

    digest: str
    tenant_id: str
    key_id: str
    api_key: str


class IdempotentIds:
    """Derives identities from idempotency keys. Holds a derived key, never the server secret."""

    __slots__ = ("_k",)

    def __init__(self, secret: bytes) -> None:
        self._k = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "IdempotentIds(<hidden>)"

    def derive(self, scope: str, idempotency_key: str) -> Derived:
        """``scope`` names the operation and its target (``"create-tenant"``, ``"issue-key:<tenant>"``)."""
        digest = hmac.new(self._k, f"{scope}\0{idempotency_key}".encode(), hashlib.sha256).hexdigest()
        secret = hmac.new(self._k, b"api-key\0" + digest.encode(), hashlib.sha256).digest()
        api_key = KEY_PREFIX + base64.urlsafe_b64encode(secret).decode().rstrip("=")
        return Derived(digest, "ten_" + digest[:16], "key_" + digest[16:28], api_key)


def encode_record(request: dict[str, Any], created_at: str) -> str:
    """The stored record of a create: what was asked and when it was applied."""
    return json.dumps({"request": request, "created_at": created_at}, sort_keys=True)


def replayed_created_at(stored: str, request: dict[str, Any]) -> str:
    """The first create's time from its record; BadInput if that create asked for something else."""
    record = json.loads(stored)
    if record["request"] != request:
        raise BadInput(
            "this Idempotency-Key was already used for a different request; use a new key for a new request",
            code="idempotency_key_reused",
        )
    return str(record["created_at"])
