"""Synthetic segmentation scenes composed of real MNIST digits.

A scene is a 64x64 black canvas split into a 2x2 grid of 32x32 cells; 1-3 distinct cells each receive one
28x28 digit at a random offset of 0-4 pixels, so digits never overlap. The mask holds 0 (background) or
1 + the digit's class for every pixel of the digit's stroke (intensity >= 96 of 255).
"""

from __future__ import annotations

import numpy as np

from service.presets.sources import DigitSplit

CANVAS = 64
CELL = 32
STROKE_THRESHOLD = 96
LABELS = ("background", *(f"digit {d}" for d in range(10)))


def compose(digits: DigitSplit, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` scenes: images uint8 (count, 64, 64) and masks int64 (count, 64, 64) of class ids."""
    images = np.zeros((count, CANVAS, CANVAS), dtype=np.uint8)
    masks = np.zeros((count, CANVAS, CANVAS), dtype=np.int64)
    side = digits.images.shape[1]
    for scene in range(count):
        cells = rng.permutation(4)[: int(rng.integers(1, 4))]  # 1, 2 or 3 digits
        for cell in cells:
            pick = int(rng.integers(len(digits.labels)))
            digit = digits.images[pick]
            top = (cell // 2) * CELL + int(rng.integers(0, CELL - side + 1))
            left = (cell % 2) * CELL + int(rng.integers(0, CELL - side + 1))
            images[scene, top : top + side, left : left + side] = digit
            masks[scene, top : top + side, left : left + side][digit >= STROKE_THRESHOLD] = (
                digits.labels[pick] + 1
            )
    return images, masks
