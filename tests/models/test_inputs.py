"""Decoding and validation of one raw input, independent of any model."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import BadInput, PayloadTooLarge
from service.models.inputs import InputLimits, check_text, decode_image
from tests.models.images import encode, noise_image

LIMITS = InputLimits()


def test_png_and_jpeg_decode_to_the_asked_mode():
    pixels = noise_image(12, 9)
    png = decode_image(encode(pixels), LIMITS, "RGB")
    assert (png.mode, png.size) == ("RGB", (9, 12))
    assert png.tobytes() == pixels.tobytes()
    jpeg = decode_image(encode(pixels, "JPEG", quality=90), LIMITS, "L")
    assert (jpeg.mode, jpeg.size) == ("L", (9, 12))


def test_grey_to_rgb_and_back_keeps_values():
    grey = noise_image(8, 8, channels=1)
    rgb = decode_image(encode(grey), LIMITS, "RGB")
    assert decode_image(encode(grey), LIMITS, "L").tobytes() == grey.tobytes()
    assert rgb.convert("L").tobytes() == grey.tobytes()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"definitely not an image", "not a PNG or JPEG"),
        (encode(noise_image(8, 8), "GIF"), "not a PNG or JPEG"),
        (encode(noise_image(8, 8), "BMP"), "not a PNG or JPEG"),
        (encode(noise_image(64, 64))[:200], "could not be decoded"),
        ("a string", "must be the bytes"),
    ],
)
def test_undecodable_images_are_bad_input(raw, message):
    with pytest.raises(BadInput, match=message):
        decode_image(raw, LIMITS, "RGB")


def test_byte_limit_checked_before_decoding():
    raw = encode(noise_image(40, 40))
    with pytest.raises(PayloadTooLarge, match=f"{len(raw)} bytes; the limit is 100"):
        decode_image(raw, InputLimits(max_image_bytes=100), "RGB")


def test_pixel_limit_read_from_the_header():
    # A 3000x3000 black PNG is a few kilobytes: the pixel count, not the byte size, must stop it.
    raw = encode(np.zeros((3000, 3000), dtype=np.uint8))
    assert len(raw) < 50_000
    with pytest.raises(PayloadTooLarge, match="3000x3000 = 9000000 pixels"):
        decode_image(raw, InputLimits(max_image_pixels=1_000_000), "L")


def test_text_checks():
    assert check_text("hello", LIMITS) == "hello"
    assert check_text("héllo".encode(), LIMITS) == "héllo"
    with pytest.raises(BadInput, match="not valid UTF-8"):
        check_text(b"\xc3\x28", LIMITS)
    with pytest.raises(BadInput, match="empty"):
        check_text(" ", LIMITS)
    with pytest.raises(PayloadTooLarge, match="11 characters; the limit is 10"):
        check_text("x" * 11, InputLimits(max_text_chars=10))


@pytest.mark.parametrize("field", ["max_text_chars", "max_image_bytes", "max_image_pixels"])
def test_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=f"InputLimits.{field} must be a positive integer"):
        InputLimits(**{field: 0})
