"""What the two image tasks share: decoding one image into pixel values, stacking a batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from service.models.inputs import decode_image, image_digest
from service.models.loaded import Item, LoadedModel
from service.tasks.base import InputKind


class ImageInput:
    """The input side of an image task: PNG/JPEG bytes, decoded by `prepare_image`."""

    input_kind: InputKind = "image"

    def prepare(self, model: LoadedModel, raw: str | bytes) -> Item:
        return prepare_image(model, raw)


def prepare_image(model: LoadedModel, raw: str | bytes) -> Item:
    """PNG/JPEG bytes -> the processor's pixel values; ``size`` is the image's original (height, width)."""
    image = decode_image(raw, model.limits, model.image_mode)
    pixels = model.image_processor(images=image, return_tensors="pt")["pixel_values"][0]
    return Item({"pixel_values": pixels.float()}, image_digest(image), (image.height, image.width))


def stack_pixels(model: LoadedModel, items: Sequence[Item]) -> torch.Tensor:
    """(B, C, H', W') pixel values on the model's device, in its dtype."""
    return torch.stack([item.tensors["pixel_values"] for item in items]).to(model.device, model.dtype)
