"""Validation and canonical forms of one raw input: a text, or the bytes of a PNG/JPEG image.

Limits are checked before any costly work: an image's byte size before decoding, its pixel count from the
header before its pixels are decoded. Every refusal is a ``BadInput`` (400) or ``PayloadTooLarge`` (413)
whose message names the limit; nothing here raises anything else for bad input.

Digests key the modulation noise, so they are taken over a canonical form that does not depend on how the
input was encoded: for a text, the token ids the model actually sees (after truncation); for an image, the
decoded pixels in the model's colour mode with the size (PNG and JPEG metadata, compression level and
chunk layout do not change it).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import BadInput, PayloadTooLarge

IMAGE_FORMATS = ("PNG", "JPEG")


@dataclass(frozen=True)
class InputLimits:
    """Per-input limits. Units: characters, bytes (after base64 decoding), pixels (width x height)."""

    max_text_chars: int = 20_000
    max_image_bytes: int = 8 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096

    def __post_init__(self) -> None:
        for field in ("max_text_chars", "max_image_bytes", "max_image_pixels"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"InputLimits.{field} must be a positive integer, got {value!r}")


def check_text(raw: str | bytes, limits: InputLimits) -> str:
    """The text of one text input; bytes must be UTF-8. Empty or whitespace-only text is refused."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"text input is not valid UTF-8 (byte {exc.start})") from exc
    if not isinstance(raw, str):
        raise BadInput(f"text input must be a string, got {type(raw).__name__}")
    if len(raw) > limits.max_text_chars:
        raise PayloadTooLarge(f"text input has {len(raw)} characters; the limit is {limits.max_text_chars}")
    if not raw.strip():
        raise BadInput("text input is empty")
    return raw


def decode_image(raw: str | bytes, limits: InputLimits, mode: str) -> Image.Image:
    """Decode PNG/JPEG bytes into a loaded image in ``mode`` ("L" or "RGB"), EXIF orientation applied."""
    if not isinstance(raw, bytes | bytearray):
        raise BadInput("image input must be the bytes of a PNG or JPEG file")
    if len(raw) > limits.max_image_bytes:
        raise PayloadTooLarge(f"image has {len(raw)} bytes; the limit is {limits.max_image_bytes}")
    if not raw:
        raise BadInput("image input is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)
            width, height = opened.size
            if width * height > limits.max_image_pixels:
                raise PayloadTooLarge(
                    f"image is {width}x{height} = {width * height} pixels; the limit is "
                    f"{limits.max_image_pixels}"
                )
            opened.load()
            image: Image.Image = ImageOps.exif_transpose(opened) or opened
            return image.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise BadInput("image bytes are not a PNG or JPEG file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"image could not be decoded: {exc}") from exc


def text_digest(token_ids: list[int]) -> bytes:
    """SHA-256 over the token ids (little-endian int64) the model sees for a text."""
    payload = b"".join(int(t).to_bytes(8, "little", signed=True) for t in token_ids)
    return hashlib.sha256(b"aimserve-text\0" + payload).digest()


def image_digest(image: Image.Image) -> bytes:
    """SHA-256 over an image's mode, size and decoded pixels."""
    header = f"{image.mode}:{image.width}x{image.height}\0".encode()
    return hashlib.sha256(b"aimserve-image\0" + header + image.tobytes()).digest()
