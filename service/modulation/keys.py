"""Keys: what makes a row's noise a deterministic, unguessable function of the tier and the input.

The service keys a row by `derive_tier_key` (HMAC-SHA256 of the server secret and the tier's name) and the
input's semantic bucket codes (`service.modulation.semantic`, hashed with `derive_projection_key`). The
tenant does not enter: every account of a tier gets the same draw for the same input, so a second account
gains nothing; the tier does, so two tiers never share a draw (with a shared z, free = clean + 1.8z and
standard = clean + 1.0z would let one client holding both solve for the clean logits).

`derive_row_key` (HMAC of secret, a name and an input digest) keys byte-exact uses: the evaluation
commands' fixed repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

RowKey = tuple[int, int]
_DOMAIN = b"aimserve/noise/v1\x00"
_TIER_DOMAIN = b"aimserve/noise/tier/v2\x00"
_PROJECTION_DOMAIN = b"aimserve/noise/projection/v2\x00"


def input_digest(*parts: bytes) -> bytes:
    """SHA-256 over length-prefixed parts: a canonical digest of one input (text bytes, image pixels, ...)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(struct.pack("<Q", len(part)))
        h.update(part)
    return h.digest()


def derive_row_key(secret: bytes, tenant_id: str, digest: bytes) -> RowKey:
    """Two unsigned 32-bit words keyed by (secret, tenant, input digest)."""
    tenant = tenant_id.encode()
    msg = _DOMAIN + struct.pack("<I", len(tenant)) + tenant + digest
    mac = hmac.new(secret, msg, hashlib.sha256).digest()
    k1, k2 = struct.unpack("<II", mac[:8])
    return (k1, k2)


def _words(mac: bytes) -> RowKey:
    k1, k2 = struct.unpack("<II", mac[:8])
    return (k1, k2)


def derive_tier_key(secret: bytes, tier: str) -> RowKey:
    """The base key of every row served at ``tier``: HMAC-SHA256(secret, tier name), first 64 bits."""
    return _words(hmac.new(secret, _TIER_DOMAIN + tier.encode(), hashlib.sha256).digest())


def derive_projection_key(secret: bytes) -> RowKey:
    """The key of the semantic hash's random projections (shared by all tiers: only buckets, not draws)."""
    return _words(hmac.new(secret, _PROJECTION_DOMAIN, hashlib.sha256).digest())


def as_int32(word: int) -> int:
    """The int32 with the same bits as an unsigned 32-bit word (torch has no uint32 arithmetic)."""
    return word - (1 << 32) if word >= (1 << 31) else word
