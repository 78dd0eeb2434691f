"""The task registry: one module per task behind the `Task` protocol (see ``base``), looked up by name.

``LoadedModel.kind`` is a model's task; the web layer, the loader and the evaluation commands dispatch
through it instead of comparing task names. Task modules build on ``service.models`` and
``service.serving.predict``; ``service.models`` looks its tasks up at use (``LoadedModel.kind``), never at
import, so the two packages do not import each other while loading.
"""

from __future__ import annotations

from service.tasks.base import BatchedTask, Task
from service.tasks.registry import (
    IMAGE_CLASSIFICATION,
    NAMES,
    SEMANTIC_SEGMENTATION,
    TASKS,
    TEXT_CLASSIFICATION,
    TEXT_GENERATION,
    batched,
    task_named,
    task_of_architecture,
)

__all__ = [
    "IMAGE_CLASSIFICATION",
    "NAMES",
    "SEMANTIC_SEGMENTATION",
    "TASKS",
    "TEXT_CLASSIFICATION",
    "TEXT_GENERATION",
    "BatchedTask",
    "Task",
    "batched",
    "task_named",
    "task_of_architecture",
]
