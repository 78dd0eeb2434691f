"""Semantic segmentation: per-pixel classes of an image, served by /v1/segment."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from service.models.heldout import HeldOut, pixel_rows
from service.models.keyview import INPUT
from service.models.loaded import Item, LoadedModel
from service.modulation import RowKey
from service.serving.predict import Row, SegResult, segment_batch
from service.tasks.base import Calibration
from service.tasks.images import ImageInput, stack_pixels

SEGMENT_ROUTE = "/v1/segment"


class SemanticSegmentation(ImageInput):
    name = "semantic-segmentation"
    architecture = "ForSemanticSegmentation"
    auto_class = "AutoModelForSemanticSegmentation"
    route = SEGMENT_ROUTE
    generates = False
    key_views: tuple[str, ...] = (INPUT,)

    def viewed(self, model: LoadedModel, items: Sequence[Item]) -> list[int]:  # noqa: ARG002 (the Task protocol)
        return []

    def logits(self, model: LoadedModel, items: Sequence[Item], with_key_view: bool) -> torch.Tensor:  # noqa: ARG002 (the Task protocol)
        """(B, C, h, w) at the model's output resolution (``upsample`` brings a row to its item's size)."""
        result: torch.Tensor = model.model(pixel_values=stack_pixels(model, items)).logits
        return result

    def calibrate(self, model: LoadedModel, data: HeldOut, limit: int) -> Calibration:
        return pixel_rows(model, data, limit)

    def run_batch(self, model: LoadedModel, rows: list[Row], projection: RowKey) -> list[SegResult]:
        return segment_batch(model, rows, projection)

    def respond(self, labels: list[str], result: Any) -> dict[str, Any]:
        """The mask as a base64 PNG of class ids, its size, and the classes present by pixel share."""
        mask = result.mask
        buf = io.BytesIO()
        Image.fromarray(mask.numpy(), mode="L").save(buf, format="PNG")
        counts = torch.bincount(mask.flatten().long(), minlength=len(labels)).tolist()
        total = mask.numel()
        classes = [
            {"label": labels[i], "pixel_fraction": n / total}
            for i, n in sorted(enumerate(counts), key=lambda t: -t[1])
            if n > 0
        ]
        return {
            "width": int(mask.shape[1]),
            "height": int(mask.shape[0]),
            "mask": base64.b64encode(buf.getvalue()).decode(),
            "classes": classes,
        }
