"""The digits preset: a real MNIST classifier served from PNG/JPEG bytes through the loader."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from service.errors import BadInput, PayloadTooLarge
from service.models import held_out
from tests.presets.manifest import manifest

pytestmark = pytest.mark.slow

ACCURACY_FLOOR = 0.95  # measured 0.977 on the 1,000 held-out digits


def _encode(array: np.ndarray, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format)
    return buffer.getvalue()


def test_labels_and_task(digits):
    assert digits.task == "image-classification"
    assert digits.labels == [str(d) for d in range(10)]


def test_held_out_accuracy_from_png_bytes(digits):
    data = held_out(digits.path)
    assert len(data.inputs) == 1000
    logits = torch.cat(
        [
            digits.forward([digits.prepare(raw) for raw in data.inputs[i : i + 100]])
            for i in range(0, 1000, 100)
        ]
    )
    assert logits.shape == (1000, 10)
    accuracy = float((logits.argmax(-1) == torch.tensor(data.labels)).float().mean())
    assert accuracy > ACCURACY_FLOOR
    assert accuracy == pytest.approx(manifest(digits)["metrics"]["accuracy"], abs=0.002)


def test_rgb_and_jpeg_versions_agree(digits):
    data = held_out(digits.path)
    assert data.images is not None
    grey = data.images[:50]
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    by_grey = digits.forward([digits.prepare(_encode(a)) for a in grey]).argmax(-1)
    by_rgb = digits.forward([digits.prepare(_encode(a)) for a in rgb]).argmax(-1)
    by_jpeg = digits.forward([digits.prepare(_encode(a, "JPEG")) for a in grey]).argmax(-1)
    assert torch.equal(by_grey, by_rgb)
    assert float((by_grey == by_jpeg).float().mean()) >= 0.95
    assert digits.prepare(_encode(grey[0])).digest == digits.prepare(_encode(rgb[0])).digest


def test_larger_image_is_resized_and_keeps_its_size(digits):
    data = held_out(digits.path)
    assert data.images is not None
    big = np.asarray(Image.fromarray(data.images[0]).resize((112, 84)))
    item = digits.prepare(_encode(big))
    assert item.size == (84, 112)
    assert item.tensors["pixel_values"].shape == (1, 28, 28)


def test_bad_and_oversized_images(digits):
    with pytest.raises(BadInput):
        digits.prepare(b"\x89PNG\r\n\x1a\n but then garbage")
    with pytest.raises(BadInput):
        digits.prepare("not bytes")
    with pytest.raises(PayloadTooLarge):
        digits.prepare(_encode(np.zeros((5000, 5000), dtype=np.uint8)))
    with pytest.raises(PayloadTooLarge):
        digits.prepare(b"\x89PNG" + b"\0" * (digits.limits.max_image_bytes + 1))
