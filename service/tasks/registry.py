"""The tasks the service serves, by name: the one place a task is registered."""

from __future__ import annotations

from service.errors import ConfigError
from service.tasks.base import BatchedTask, Task
from service.tasks.generation import TextGeneration
from service.tasks.image_classification import ImageClassification
from service.tasks.segmentation import SemanticSegmentation
from service.tasks.text_classification import TextClassification

TEXT_CLASSIFICATION = TextClassification()
IMAGE_CLASSIFICATION = ImageClassification()
SEMANTIC_SEGMENTATION = SemanticSegmentation()
TEXT_GENERATION = TextGeneration()

TASKS: dict[str, Task] = {
    task.name: task
    for task in (TEXT_CLASSIFICATION, IMAGE_CLASSIFICATION, SEMANTIC_SEGMENTATION, TEXT_GENERATION)
}
NAMES = tuple(TASKS)


def task_named(name: str) -> Task:
    """The registered task called ``name``; ConfigError listing the known ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"task {name!r} is not supported; use one of {', '.join(NAMES)}") from None


def task_of_architecture(architecture: str) -> Task | None:
    """The task whose model class ``architecture`` (from config.json) names, or None."""
    return next((t for t in TASKS.values() if architecture.endswith(t.architecture)), None)


def batched(task: Task) -> BatchedTask:
    """``task`` as a batched task; ConfigError for one an engine decodes (a wiring mistake)."""
    if not isinstance(task, BatchedTask):
        raise ConfigError(f"task {task.name} is not served by the batcher")
    return task
