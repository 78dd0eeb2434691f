"""The cifar10-lite0 preset: a linear probe on frozen EfficientNet-Lite0 features.

CI runs ``build_probe`` (the preset's whole build path: bigbench-format reader, disjoint split, features
through the saved image processor, probe training, save, reload check) on a small bigbench-format task
made of real MNIST digits as RGB PNGs. The shipped preset needs the CIFAR-10 file of ``bigbench`` (a
1.8 GB package that ``make setup`` does not install: ``make bigbench`` does); its tests run where it is
installed and are skipped, with the reason shown, where it is not.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from service.errors import ConfigError
from service.models import held_out, load_model
from service.presets import build_preset
from service.presets.cifar10 import ProbeRecipe, build_probe
from service.presets.sources import read_bigbench_images, read_mnist_5k, split_per_class

pytestmark = pytest.mark.slow

CLASSES = [f"digit {d}" for d in range(10)]


def _task_file(folder: Path, per_class: int) -> Path:
    """A bigbench image task of ``per_class`` MNIST digits per class, RGB PNGs, sorted by class."""
    train, _ = read_mnist_5k()
    examples = []
    for digit in range(10):
        for image in train.images[train.labels == digit][:per_class]:
            buffer = io.BytesIO()
            Image.fromarray(np.repeat(image[..., None], 3, axis=-1)).save(buffer, format="PNG")
            scores = {name: int(i == digit) for i, name in enumerate(CLASSES)}
            examples.append({"input": base64.b64encode(buffer.getvalue()).decode(), "target_scores": scores})
    path = folder / "task.json"
    path.write_text(json.dumps({"examples": examples}), encoding="utf-8")
    return path


def test_reader_and_disjoint_split(tmp_path):
    data = read_bigbench_images(_task_file(tmp_path, 12))
    assert data.images.shape == (120, 28, 28, 3) and data.classes == tuple(CLASSES)
    assert np.bincount(data.labels).tolist() == [12] * 10
    train, test = split_per_class(data, test=4, train=8)
    assert len(train.labels) == 80 and len(test.labels) == 40
    rows = {image.tobytes() for image in train.images}
    assert not any(image.tobytes() in rows for image in test.images)
    with pytest.raises(ValueError, match="has 12 images, need 13"):
        split_per_class(data, test=5, train=8)


def test_reader_rejects_inconsistent_classes(tmp_path):
    path = _task_file(tmp_path, 1)
    task = json.loads(path.read_text())
    task["examples"][3]["target_scores"] = {"cat": 1, "dog": 0}
    path.write_text(json.dumps(task))
    with pytest.raises(ConfigError, match="names classes"):
        read_bigbench_images(path)


def test_probe_build_path_on_a_small_task(tmp_path):
    data = read_bigbench_images(_task_file(tmp_path, 40))
    out = tmp_path / "model"
    out.mkdir()
    fields = build_probe(out, data, ProbeRecipe(side=64, heldout_per_class=10, train_per_class=30))
    assert fields["sizes"]["train"] == 300 and fields["sizes"]["heldout"] == 100
    model = load_model(out)
    assert model.labels == CLASSES and model.num_classes == 10
    heldout = held_out(out)
    logits = model.forward([model.prepare(raw) for raw in heldout.inputs])
    accuracy = float((logits.argmax(-1) == torch.tensor(heldout.labels)).float().mean())
    assert accuracy == pytest.approx(fields["metrics"]["accuracy"], abs=1e-4)  # rounded to 4 places
    assert accuracy > 0.5  # chance is 0.1


@pytest.mark.skipif(
    importlib.util.find_spec("bigbench") is None, reason="bigbench not installed (make bigbench)"
)
def test_shipped_preset_reproduces_its_held_out_accuracy(state_dir):
    model = load_model(build_preset("cifar10-lite0", state_dir))
    heldout = held_out(model.path)
    assert len(heldout.inputs) == 1000 and model.labels[0] == "airplane"
    logits = torch.cat(
        [
            model.forward([model.prepare(raw) for raw in heldout.inputs[i : i + 100]])
            for i in range(0, 1000, 100)
        ]
    )
    accuracy = float((logits.argmax(-1) == torch.tensor(heldout.labels)).float().mean())
    manifest = json.loads((model.path / "aimserve.json").read_text())
    assert accuracy == pytest.approx(manifest["metrics"]["accuracy"], abs=0.002)
    assert accuracy > 0.75
