"""Image classification and segmentation over HTTP with the real `digits` and `digits-seg` presets."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.models import held_out
from service.store import EmbeddedRedis
from tests.live import LiveService, serve_preset, state_dir


def _b64(png: bytes) -> dict[str, str]:
    return {"image": base64.b64encode(png).decode()}


@pytest.fixture(scope="module")
def digits_service(redis_server: EmbeddedRedis, module_tiers: Path) -> Iterator[LiveService]:
    yield from serve_preset("digits", redis_server, module_tiers)


@pytest.fixture(scope="module")
def seg_service(redis_server: EmbeddedRedis, module_tiers: Path) -> Iterator[LiveService]:
    yield from serve_preset("digits-seg", redis_server, module_tiers)


def test_digits_premium_is_accurate_and_free_is_noisier(digits_service: LiveService) -> None:
    data = held_out(state_dir() / "presets" / "digits")
    inputs, labels = list(data.inputs)[:64], list(data.labels or [])[:64]
    _, premium = digits_service.new_tenant("premium")
    _, free = digits_service.new_tenant("free")
    body = {"inputs": [_b64(x) for x in inputs], "top_k": 3}  # type: ignore[arg-type]
    with digits_service.client(premium) as p, digits_service.client(free) as f:
        clean = p.post("/v1/classify", json=body).json()["results"]
        noisy = f.post("/v1/classify", json=body).json()["results"]
        again = f.post("/v1/classify", json=body).json()["results"]
        assert p.post("/v1/segment", json={"inputs": body["inputs"][:1]}).status_code == 404
        assert (
            p.post("/v1/classify", json={"inputs": ["a text"]}).json()["error"]["code"] == "wrong_input_type"
        )
        bad = p.post("/v1/classify", json={"inputs": [{"image": "!!!"}]})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_image"
        junk = p.post("/v1/classify", json={"inputs": [_b64(b"\x89PNG not an image")]})
        assert junk.status_code == 400
    accuracy = [
        np.mean([r["label"] == str(y) for r, y in zip(rs, labels, strict=True)]) for rs in (clean, noisy)
    ]
    assert accuracy[0] >= 0.9, accuracy  # docs/presets.md: the preset's held-out accuracy
    assert accuracy[1] < accuracy[0]
    assert noisy == again and len(clean[0]["top_k"]) == 3


def test_segmentation_masks_match_inputs_and_premium_beats_free(seg_service: LiveService) -> None:
    data = held_out(state_dir() / "presets" / "digits-seg")
    inputs, masks = list(data.inputs)[:8], data.masks
    assert masks is not None
    _, premium = seg_service.new_tenant("premium")
    _, free = seg_service.new_tenant("free")
    body = {"inputs": [_b64(x) for x in inputs]}  # type: ignore[arg-type]
    pixel_acc = []
    for key in (premium, free):
        with seg_service.client(key) as c:
            response = c.post("/v1/segment", json=body)
            assert response.status_code == 200, response.text
            results = response.json()["results"]
        correct = total = 0
        for result, truth in zip(results, masks[:8], strict=True):
            mask = np.array(Image.open(io.BytesIO(base64.b64decode(result["mask"]))))
            assert mask.shape == truth.shape == (result["height"], result["width"])
            assert abs(sum(c["pixel_fraction"] for c in result["classes"]) - 1.0) < 1e-6
            correct += int((mask == truth).sum())
            total += mask.size
        pixel_acc.append(correct / total)
    assert pixel_acc[0] > 0.9 and pixel_acc[1] < pixel_acc[0], pixel_acc


def test_segmentation_of_a_different_size_image(seg_service: LiveService) -> None:
    _, key = seg_service.new_tenant("premium")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 90), dtype=np.uint8)).save(buf, format="PNG")
    with seg_service.client(key) as c:
        result = c.post("/v1/segment", json={"inputs": [_b64(buf.getvalue())]}).json()["results"][0]
    assert (result["width"], result["height"]) == (90, 40)
