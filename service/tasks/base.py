"""What every task provides: the `Task` protocol and, for tasks served row by row, `BatchedTask`.

A task is one kind of model the service can serve (text classification, image classification, semantic
segmentation, text generation). Its module is its one home: how a raw input becomes an `Item`, how a batch
of items becomes logits, how its held-out data gives calibration logits, which route serves it and, for a
batched task, how a batch of rows runs and how one row's result becomes its JSON. ``service.tasks.registry``
holds one instance of each, looked up by name once per model (``LoadedModel.kind``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import torch

from service.errors import NotFound

if TYPE_CHECKING:
    from service.models.heldout import HeldOut
    from service.models.loaded import Item, LoadedModel
    from service.modulation import RowKey
    from service.serving.predict import Row

InputKind = Literal["text", "image"]
Calibration = tuple[torch.Tensor, torch.Tensor | None]


@runtime_checkable
class Task(Protocol):
    """One task: its name (``aimserve.json``'s ``task``, the ``task`` label of /metrics), the suffix of
    ``config.json``'s ``architectures`` it is inferred from, the transformers Auto class that loads it,
    the kind of input it takes, the route that serves it, whether it generates tokens (a causal LM:
    its classes are the vocabulary, it has no labels and an engine decodes it) and the keying views
    (`service.models.keyview`) a manifest may declare for it (checked once, at load time)."""

    name: str
    architecture: str
    auto_class: str
    input_kind: InputKind
    route: str
    generates: bool
    key_views: tuple[str, ...]

    def prepare(self, model: LoadedModel, raw: str | bytes) -> Item:
        """Validate and preprocess one raw input (BadInput / PayloadTooLarge when unusable)."""
        ...

    def logits(self, model: LoadedModel, items: Sequence[Item], with_key_view: bool) -> torch.Tensor:
        """Logits of one batch of items (called under ``torch.inference_mode``)."""
        ...

    def viewed(self, model: LoadedModel, items: Sequence[Item]) -> list[int]:
        """Indices of the items whose key-view rows `logits` appends (with ``with_key_view``), in order."""
        ...

    def calibrate(self, model: LoadedModel, data: HeldOut, limit: int) -> Calibration:
        """(N, C) clean logits of held-out ``data``, N <= ``limit``, and their labels (or None)."""
        ...


@runtime_checkable
class BatchedTask(Task, Protocol):
    """A task served by the dynamic batcher: a batch of rows in, one result per row out."""

    def run_batch(self, model: LoadedModel, rows: list[Row], projection: RowKey) -> list[Any]:
        """One forward pass over ``rows``, each modulated with its spec."""
        ...

    def respond(self, labels: list[str], result: Any) -> dict[str, Any]:
        """One row's result as it appears in the response's ``results``."""
        ...


def unsupported(model: LoadedModel, what: str) -> NotFound:
    """The 404 for asking a model for something its task does not do."""
    return NotFound(
        f"the loaded model ({model.name}) serves {model.task}, not {what}", code="unsupported_task"
    )
