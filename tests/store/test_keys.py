"""API-key format and the keyed digest."""

from __future__ import annotations

import base64

from service.store.keys import KEY_PREFIX, KeyHasher, looks_like_key, new_api_key, new_key_id, new_tenant_id
from service.store.models import KEY_ID_RE, TENANT_ID_RE


def test_keys_are_prefixed_and_carry_256_random_bits() -> None:
    keys = {new_api_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert key.startswith(KEY_PREFIX) and looks_like_key(key)
        body = key[len(KEY_PREFIX) :]
        assert len(base64.urlsafe_b64decode(body + "=")) == 32


def test_ids_match_their_formats() -> None:
    assert all(TENANT_ID_RE.match(new_tenant_id()) for _ in range(100))
    assert all(KEY_ID_RE.match(new_key_id()) for _ in range(100))


def test_digest_depends_on_key_and_secret_and_hides_the_secret() -> None:
    key = new_api_key()
    a, b = KeyHasher(b"secret-one-0123456789"), KeyHasher(b"secret-two-0123456789")
    assert a.digest(key) == a.digest(key)
    assert a.digest(key) != b.digest(key)
    assert a.digest(key) != a.digest(new_api_key())
    assert len(a.digest(key)) == 64
    assert "secret-one" not in repr(a)


def test_shape_check_refuses_lookalikes() -> None:
    key = new_api_key()
    for bad in ("", KEY_PREFIX, key[:-1], key + "A", "aim_pk_" + key[7:], key[:-1] + "/", key.upper()):
        assert not looks_like_key(bad)
