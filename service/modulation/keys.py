"""Row keys: what makes a row's noise a deterministic, unguessable function of who asked and what.

key = first 64 bits of HMAC-SHA256(server secret, tenant id, input digest). Without the secret the noise
cannot be predicted; with the same tenant and input it is always the same, so repeating a request and
voting recovers nothing that a tier withholds.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

RowKey = tuple[int, int]
_DOMAIN = b"aimserve/noise/v1\x00"


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


def as_int32(word: int) -> int:
    """The int32 with the same bits as an unsigned 32-bit word (torch has no uint32 arithmetic)."""
    return word - (1 << 32) if word >= (1 << 31) else word
