"""Held-out files: the format round-trips, broken files are ConfigErrors, calibration logits have the
documented shapes and come from the model's own forward pass."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from service.errors import ConfigError
from service.models import calibration_logits, held_out, load_model, upsample, write_images, write_texts
from service.models.heldout import HELDOUT_DIR
from tests.models.images import noise_image


def test_texts_round_trip(tmp_path):
    write_texts(tmp_path, ["the cat", "ünïcode ✓"], [2, 0])
    data = held_out(tmp_path)
    assert (data.kind, list(data.inputs), data.labels) == ("text", ["the cat", "ünïcode ✓"], [2, 0])
    write_texts(tmp_path / "unlabelled", ["a", "b"])
    assert held_out(tmp_path / "unlabelled" / "texts.jsonl").labels is None


def test_images_round_trip_as_png_bytes(tmp_path):
    images = np.stack([noise_image(10, 12, seed=s, channels=1) for s in range(3)])
    masks = (images > 128).astype(np.int64)
    write_images(tmp_path / HELDOUT_DIR, images, masks=masks)
    data = held_out(tmp_path)
    assert data.kind == "image"
    assert data.labels is None
    np.testing.assert_array_equal(data.masks, masks)
    for raw, array in zip(data.inputs, images, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(raw))), array)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("texts.jsonl", '{"text": "ok"}\n{"no_text": 1}\n', "line 2 has no string 'text'"),
        ("texts.jsonl", "not json\n", "unreadable"),
        ("texts.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', "some lines have a label"),
        ("texts.jsonl", "\n", "holds no texts"),
        ("images.npz", "not a zip", "unreadable"),
    ],
)
def test_broken_files(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError, match=message):
        held_out(tmp_path / name)


def test_masks_must_match_images(tmp_path):
    write_images(tmp_path, np.zeros((2, 8, 8)), masks=np.zeros((2, 8, 9)))
    with pytest.raises(ConfigError, match="do not match"):
        held_out(tmp_path)


def test_missing_held_out(tmp_path):
    with pytest.raises(ConfigError, match=f"no held-out inputs at {tmp_path}"):
        held_out(tmp_path)


def test_classification_calibration(tiny_models, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_models["text-classification"], folder)
    texts = [f"the {w} sat on a mat" for w in ("cat", "dog", "mat", "cat cat", "dog ran")]
    write_texts(folder / HELDOUT_DIR, texts, [0, 1, 2, 0, 1])
    model = load_model(folder)
    logits, labels = calibration_logits(model, limit=4)
    assert logits.shape == (4, 3) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert labels.tolist() == [0, 1, 2, 0]
    expected = model.forward([model.prepare(t) for t in texts[:4]])
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_segmentation_calibration_samples_pixels_with_their_labels(tiny_models, tmp_path):
    model = load_model(tiny_models["semantic-segmentation"])
    images = np.stack([noise_image(20, 24, seed=s) for s in range(3)])
    masks = np.random.default_rng(0).integers(0, 3, (3, 20, 24))
    write_images(tmp_path, images, masks=masks)
    logits, labels = calibration_logits(model, limit=500, source=tmp_path)
    assert logits.shape == (500, 3)
    assert labels.shape == (500,)
    # Every sampled row is one pixel of the upsampled logits, labelled with that pixel's mask value.
    data = held_out(tmp_path)
    items = [model.prepare(raw) for raw in data.inputs]
    full = upsample(model.forward(items), (20, 24)).permute(0, 2, 3, 1).reshape(-1, 3)
    flat_masks = torch.from_numpy(masks.reshape(-1))
    matches = (logits[:, None, :] - full[None]).abs().amax(-1) < 1e-5
    same_label = flat_masks[None, :] == labels[:, None]
    assert (matches & same_label).any(1).all()


def test_generation_calibration(tiny_models, tmp_path):
    model = load_model(tiny_models["text-generation"])
    write_texts(tmp_path, ["the cat sat on the mat", "a dog ran far away", "the dog sat"])
    logits, labels = calibration_logits(model, limit=100, source=tmp_path)
    assert labels is None
    assert logits.shape == (6 + 5 + 3, 13)  # fewer positions than the limit: all of them
    assert torch.isfinite(logits).all()
    few, _ = calibration_logits(model, limit=4, source=tmp_path)
    assert few.shape == (4, 13)
    # Each row is the next-token logits at one position of the first text, run alone.
    alone = model.model(**model.tokenizer("the cat sat on the mat", return_tensors="pt")).logits[0]
    assert ((few[:, None, :] - alone[None]).abs().amax(-1) < 1e-5).any(1).all()
