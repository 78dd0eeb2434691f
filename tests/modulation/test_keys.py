from __future__ import annotations

from service.modulation.keys import as_int32, derive_row_key, input_digest


def test_row_key_deterministic_and_distinct() -> None:
    d = input_digest(b"hello")
    k = derive_row_key(b"secret", "tenant-a", d)
    assert k == derive_row_key(b"secret", "tenant-a", d)
    assert k != derive_row_key(b"secret", "tenant-b", d)
    assert k != derive_row_key(b"other", "tenant-a", d)
    assert k != derive_row_key(b"secret", "tenant-a", input_digest(b"hello!"))
    assert all(0 <= w < 2**32 for w in k)


def test_digest_is_unambiguous_over_parts() -> None:
    assert input_digest(b"ab", b"c") != input_digest(b"a", b"bc")


def test_as_int32_round_trip() -> None:
    assert as_int32(0) == 0
    assert as_int32(2**31) == -(2**31)
    assert as_int32(2**32 - 1) == -1
