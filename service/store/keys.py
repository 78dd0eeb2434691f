"""API-key and identifier generation, and the keyed hash that is the only stored form of a key.

A key is ``aim_sk_`` + ``secrets.token_urlsafe(32)`` (256 random bits). Redis stores
``HMAC-SHA256(k_hash, key)`` as the lookup index, where ``k_hash`` is derived from the server secret
for this one purpose, so a leaked Redis dump neither reveals keys nor allows offline guessing without
the secret. A lookup is one O(1) Redis read by digest; no stored digest is ever compared in Python, and
where a digest is compared (the local cache) :func:`hmac.compare_digest` is used.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "aim_sk_"
_KEY_RANDOM_BYTES = 32
_KEY_BODY_CHARS = 43  # len(token_urlsafe(32))
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_PURPOSE = b"aimserve/api-key-hash/v1"


def new_api_key() -> str:
    """A fresh API key (the caller shows it once and stores only :meth:`KeyHasher.digest` of it)."""
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_RANDOM_BYTES)


def new_tenant_id() -> str:
    return "ten_" + secrets.token_hex(8)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def looks_like_key(candidate: str) -> bool:
    """Cheap shape check, so garbage is refused without hashing or a Redis round trip."""
    body = candidate[len(KEY_PREFIX) :]
    return (
        candidate.startswith(KEY_PREFIX) and len(body) == _KEY_BODY_CHARS and all(c in _URLSAFE for c in body)
    )


class KeyHasher:
    """Keyed digests of API keys. Holds a derived key, never the server secret itself."""

    __slots__ = ("_k",)

    def __init__(self, secret: bytes) -> None:
        self._k = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "KeyHasher(<hidden>)"

    def digest(self, api_key: str) -> str:
        """Hex HMAC-SHA256 of ``api_key``: the Redis index of the key (64 hex chars)."""
        return hmac.new(self._k, api_key.encode(), hashlib.sha256).hexdigest()
