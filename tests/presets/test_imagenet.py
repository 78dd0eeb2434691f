"""The imagenet-lite0 preset: EfficientNet-Lite0's ImageNet weights served unchanged from a transformers
folder, with 1,000 unique class names that focus can name."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from service.api.policy import label_resolver
from service.models import held_out
from service.modulation import BOOST, ModulationBatch, RowSpec, modulate
from service.presets.imagenet import reference_logits
from tests.presets.manifest import manifest

pytestmark = pytest.mark.slow


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_labels_are_the_thousand_imagenet_names(imagenet):
    labels = imagenet.labels
    assert imagenet.task == "image-classification" and imagenet.num_classes == 1000
    assert len({label.lower() for label in labels}) == 1000
    assert labels[0] == "tench" and labels[1] == "goldfish" and labels[3] == "tiger shark"
    assert labels[657] == "missile" and labels[744] == "projectile, missile"  # the two shared short names
    assert manifest(imagenet)["sizes"]["parameters"] > 4_600_000


def test_served_logits_equal_the_reference_implementation(imagenet):
    """PNG bytes through prepare/forward give the logits of efficientnet-lite-pytorch's own model."""
    data = held_out(imagenet.path)
    assert data.images is not None and len(data.inputs) == 64 and data.labels is None
    images = data.images[:6]
    served = imagenet.forward([imagenet.prepare(_png(image)) for image in images])
    expected = reference_logits(imagenet.path, images)
    assert served.shape == (6, 1000)
    assert float((served - expected).abs().max()) < 1e-4
    assert float(expected.abs().max()) > 5  # real logits, not a degenerate model


def test_a_photo_of_a_temple_is_a_building(imagenet):
    from sklearn.datasets import load_sample_images

    china = load_sample_images().images[0]  # a photo of a Chinese temple
    logits = imagenet.forward([imagenet.prepare(_png(china))])[0]
    top5 = {imagenet.labels[int(i)] for i in logits.topk(5).indices}
    assert top5 & {"palace", "monastery", "bell tower", "dome", "pagoda", "church", "boathouse"}


def test_focus_on_a_named_class_raises_only_that_class(imagenet):
    """Focus names resolve to ImageNet ids, and boosting "tiger shark" raises its logit on every crop."""
    ids = label_resolver(imagenet.labels)(["Tiger Shark", "goldfish"])
    assert ids == (1, 3)
    data = held_out(imagenet.path)
    logits = imagenet.forward([imagenet.prepare(raw) for raw in data.inputs[:8]])
    rows = [RowSpec(0.0, (7, i), focus_ids=(3,), focus_strength=4.0, focus_sign=BOOST) for i in range(8)]
    boosted = modulate(logits, ModulationBatch.build(rows, 1000))
    changed = (boosted != logits).any(0)
    assert changed.nonzero().flatten().tolist() == [3]
    assert bool((boosted[:, 3] >= logits[:, 3]).all()) and float((boosted[:, 3] - logits[:, 3]).mean()) > 1
    assert torch.equal(logits, imagenet.forward([imagenet.prepare(raw) for raw in data.inputs[:8]]))
