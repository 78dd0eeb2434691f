"""Preset ``cifar10-lite0``: EfficientNet-Lite0 (ImageNet weights, frozen) with a CIFAR-10 linear probe.

Data: the CIFAR-10 test set that bigbench 1.0.0 ships (10,000 32x32 PNGs, sorted by class). Per class,
the first ``HELDOUT_PER_CLASS`` images are held out and the next ``TRAIN_PER_CLASS`` train, so the parts
are disjoint. Images are upscaled to ``SIDE`` x ``SIDE`` by the saved image processor itself (bilinear,
ImageNet mean/std); the backbone's pooled 1,280 features are computed once and only the final linear
layer is trained (full-batch AdamW with weight decay). The saved folder is an ordinary
``EfficientNetForImageClassification`` (see ``service.presets.efficientnet``) whose eval forward is exactly
backbone -> pooled features -> that linear layer; the build checks that the folder, loaded through
``service.models`` from PNG bytes, reproduces the trained logits.

``build_probe`` does the work for any bigbench-format image task and sizes, so the tests run the same code
on a small task file in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    features,
    lite0_imagenet,
    processed,
    save_processor,
    weights_source,
)
from service.presets.sources import (
    CIFAR10_TASK,
    ImageSplit,
    package_file,
    read_bigbench_images,
    split_per_class,
)
from service.tasks import IMAGE_CLASSIFICATION

SIDE = 128
HELDOUT_PER_CLASS = 100
TRAIN_PER_CLASS = 300


@dataclass(frozen=True)
class ProbeRecipe:
    """Sizes and training settings of a linear probe; ``steps`` full-batch AdamW steps."""

    side: int = SIDE
    heldout_per_class: int = HELDOUT_PER_CLASS
    train_per_class: int = TRAIN_PER_CLASS
    steps: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-2


def build(out: Path) -> dict[str, Any]:
    """The shipped preset: the bigbench CIFAR-10 test set with the default ``ProbeRecipe``."""
    task = package_file("bigbench", CIFAR10_TASK.removeprefix("bigbench/"))
    fields = build_probe(out, read_bigbench_images(task), ProbeRecipe())
    return {"source": [package_source("bigbench", CIFAR10_TASK), weights_source()], **fields}


def build_probe(out: Path, data: ImageSplit, recipe: ProbeRecipe) -> dict[str, Any]:
    """Train the probe on ``data``'s training part, save model, processor and held-out part to ``out``."""
    seed_everything(0)
    train, test = split_per_class(data, recipe.heldout_per_class, recipe.train_per_class)
    model = lite0_imagenet(recipe.side, list(data.classes))
    save_processor(out, recipe.side)
    processor = transformers_module().AutoImageProcessor.from_pretrained(out, local_files_only=True)
    train_features = features(model, processed(processor, train.images))
    test_features = features(model, processed(processor, test.images))
    _train_probe(model.classifier, train_features, torch.from_numpy(train.labels), recipe)
    with torch.inference_mode():
        logits = model.classifier(test_features)
    model.save_pretrained(out)
    write_images(out / HELDOUT_DIR, test.images, labels=test.labels)
    check_saved(out, IMAGE_CLASSIFICATION.name, logits[:32])
    accuracy = float((logits.argmax(-1) == torch.from_numpy(test.labels)).float().mean())
    return {
        "metrics": {"accuracy": round(accuracy, 4)},
        "sizes": {
            "parameters": parameter_count(model),
            "folder_bytes": folder_bytes(out),
            "train": len(train.labels),
            "heldout": len(test.labels),
            "input": [3, recipe.side, recipe.side],
        },
        "training": {
            "backbone": "frozen EfficientNet-Lite0 ImageNet weights",
            "probe": f"linear, full-batch AdamW, {recipe.steps} steps, lr {recipe.lr}, "
            f"weight decay {recipe.weight_decay}",
        },
    }


def _train_probe(
    layer: torch.nn.Linear, inputs: torch.Tensor, labels: torch.Tensor, recipe: ProbeRecipe
) -> None:
    """Cross-entropy on (N, 1280) features, full batch, weight decay; updates ``layer`` in place."""
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    with torch.enable_grad():
        for _ in range(recipe.steps):
            loss = torch.nn.functional.cross_entropy(layer(inputs), labels)
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
