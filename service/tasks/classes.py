"""What the two classification tasks share: calibration on the first held-out inputs, one batch of rows
through `classify_batch` at the task's noise resolution, a row's result as JSON."""

from __future__ import annotations

from typing import Any

from service.models.heldout import HeldOut, first_rows
from service.models.loaded import LoadedModel
from service.modulation import RowKey
from service.modulation.semantic import IMAGE_SMOOTHNESS, TEXT_SMOOTHNESS, Smoothness
from service.serving.predict import ClassResult, Row, classify_batch
from service.tasks.base import Calibration, InputKind, Task

CLASSIFY_ROUTE = "/v1/classify"


def class_json(labels: list[str], result: ClassResult) -> dict[str, Any]:
    """``label`` and ``score`` of the modulated top-1 and the ``top_k`` list, best first."""
    return {
        "label": labels[result.top1],
        "score": result.top[0][1],
        "top_k": [{"label": labels[i], "score": p} for i, p in result.top],
    }


def smoothness_for(task: Task | Classifier) -> Smoothness:
    """The random-feature resolution of a classifier: images' features lie closer together than texts'."""
    return IMAGE_SMOOTHNESS if task.input_kind == "image" else TEXT_SMOOTHNESS


class Classifier:
    """The parts a classification task inherits: it still states its name, inputs, prepare and logits."""

    input_kind: InputKind

    def calibrate(self, model: LoadedModel, data: HeldOut, limit: int) -> Calibration:
        return first_rows(model, data, limit)

    def run_batch(self, model: LoadedModel, rows: list[Row], projection: RowKey) -> list[ClassResult]:
        return classify_batch(model, rows, projection, smoothness_for(self))

    def respond(self, labels: list[str], result: Any) -> dict[str, Any]:
        return class_json(labels, result)
