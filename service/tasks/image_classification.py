"""Image classification: an image classifier over pixel values, served by /v1/classify."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from service.models.keyview import CENTRED, INPUT, centred
from service.models.loaded import Item, LoadedModel
from service.tasks.classes import CLASSIFY_ROUTE, Classifier
from service.tasks.images import ImageInput, stack_pixels


class ImageClassification(ImageInput, Classifier):
    name = "image-classification"
    architecture = "ForImageClassification"
    auto_class = "AutoModelForImageClassification"
    route = CLASSIFY_ROUTE
    generates = False
    key_views: tuple[str, ...] = (INPUT, CENTRED)

    def viewed(self, model: LoadedModel, items: Sequence[Item]) -> list[int]:
        return list(range(len(items))) if model.key_view == CENTRED else []

    def logits(self, model: LoadedModel, items: Sequence[Item], with_key_view: bool) -> torch.Tensor:
        """(B, C); with ``with_key_view`` and a centred key view, (2B, C): the centred views' rows after
        the images as sent (one forward pass gives both)."""
        pixels = stack_pixels(model, items)
        if with_key_view and model.key_view == CENTRED:
            pixels = torch.cat((pixels, centred(pixels)))
        result: torch.Tensor = model.model(pixel_values=pixels).logits
        return result
