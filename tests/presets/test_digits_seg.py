"""The digits-seg preset: per-pixel classes of real MNIST digit scenes, scored through the loader."""

from __future__ import annotations

import pytest
import torch

from service.models import calibration_logits, held_out, upsample
from service.presets.common import mean_iou
from tests.presets.manifest import manifest

pytestmark = pytest.mark.slow

MIOU_FLOOR = 0.65  # measured 0.711 on the 300 held-out scenes; background alone would score ~0.09


def test_labels_and_task(digits_seg):
    assert digits_seg.task == "semantic-segmentation"
    assert digits_seg.labels == ["background", *(f"digit {d}" for d in range(10))]


def test_held_out_miou_from_png_bytes(digits_seg):
    data = held_out(digits_seg.path)
    assert data.masks is not None and data.masks.shape == (300, 64, 64)
    predicted = []
    for start in range(0, 300, 50):
        items = [digits_seg.prepare(raw) for raw in data.inputs[start : start + 50]]
        logits = digits_seg.forward(items)
        assert logits.shape == (len(items), 11, 16, 16)
        predicted.append(upsample(logits, (64, 64)).argmax(1))
    truth = torch.from_numpy(data.masks)
    miou = mean_iou(torch.cat(predicted), truth, 11)
    assert miou > MIOU_FLOOR
    assert miou == pytest.approx(manifest(digits_seg)["metrics"]["miou"], abs=0.005)


def test_calibration_pixels(digits_seg):
    logits, labels = calibration_logits(digits_seg, limit=2000)
    assert logits.shape == (2000, 11)
    assert labels is not None and labels.shape == (2000,)
    assert int(labels.min()) >= 0 and int(labels.max()) <= 10
    # Uniform pixels: mostly background, and the model agrees with most of them.
    assert float((labels == 0).float().mean()) > 0.7
    assert float((logits.argmax(-1) == labels).float().mean()) > 0.9
