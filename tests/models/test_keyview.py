"""The centred keying view: shifted copies of an object on a dark background give one view.

Fixed inputs: a 28x28 (32x32) blob drawn off-centre (a seeded random stroke pattern in a 10x12 box),
shifted by every (dy, dx) in [-2, 2]^2 without wrapping its content; the tiny random image classifier of
tests/models/conftest.py with ``"key_view": "centred"`` in its manifest.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from service.errors import ConfigError
from service.models import load_model
from service.models.keyview import centred
from tests.models.images import encode


def _blob(dy: int = 0, dx: int = 0, side: int = 28) -> np.ndarray:
    image = np.zeros((side, side), dtype=np.uint8)
    strokes = np.random.default_rng(5).integers(0, 256, (10, 12), dtype=np.uint8)
    image[6 + dy : 16 + dy, 4 + dx : 16 + dx] = strokes
    return image


def _pixels(image: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(image).float()[None, None] / 255.0 - 0.5) / 0.5  # (1, 1, H, W) in [-1, 1]


def test_every_small_shift_gives_the_same_centred_view() -> None:
    reference = centred(_pixels(_blob()))
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            view = centred(_pixels(_blob(dy, dx)))
            torch.testing.assert_close(view, reference, atol=1e-5, rtol=0)


def test_the_view_is_centred_and_keeps_the_background() -> None:
    view = centred(_pixels(_blob()))[0, 0]
    mass = view + 1.0  # background -1 -> 0
    ys = torch.arange(28, dtype=torch.float32)
    assert abs(float((mass.sum(1) * ys).sum() / mass.sum()) - 13.5) < 0.05
    assert abs(float((mass.sum(0) * ys).sum() / mass.sum()) - 13.5) < 0.05
    assert float(view.min()) >= -1.0 - 1e-6 and float(view[0, 0]) == pytest.approx(-1.0)
    flat = torch.full((1, 3, 8, 8), 0.25)
    torch.testing.assert_close(centred(flat), flat)


def test_a_model_declaring_the_view_keys_on_it_and_answers_on_the_input(tiny_models, tmp_path) -> None:
    folder = tmp_path / "centred"
    shutil.copytree(tiny_models["image-classification"], folder)
    (folder / "aimserve.json").write_text(json.dumps({"key_view": "centred"}))
    plain, keyed = load_model(tiny_models["image-classification"]), load_model(folder)
    assert (plain.key_view, keyed.key_view) == ("input", "centred")
    # 32x32: the tiny model's own input size, so its processor does not resample the shift
    a, b = (keyed.prepare(encode(_blob(dy, dx, side=32))) for dy, dx in [(0, 0), (2, -1)])
    logits, features = keyed.forward_features([a, b])
    torch.testing.assert_close(logits, plain.forward([a, b]))  # the answer: the image as sent
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)
    torch.testing.assert_close(features[0], features[1], atol=1e-4, rtol=0)  # the key: the centred view


def test_an_unknown_key_view_is_a_config_error(tiny_models, tmp_path) -> None:
    shutil.copytree(tiny_models["image-classification"], tmp_path / "m")
    (tmp_path / "m" / "aimserve.json").write_text(json.dumps({"key_view": "rotated"}))
    with pytest.raises(ConfigError, match="declares key_view 'rotated'"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("task", ["text-classification", "semantic-segmentation", "text-generation"])
def test_the_centred_view_on_any_other_task_is_a_config_error(tiny_models, tmp_path, task) -> None:
    shutil.copytree(tiny_models[task], tmp_path / "m")
    (tmp_path / "m" / "aimserve.json").write_text(json.dumps({"task": task, "key_view": "centred"}))
    with pytest.raises(ConfigError, match=f"declares key_view 'centred', which {task} does not support"):
        load_model(tmp_path / "m")
