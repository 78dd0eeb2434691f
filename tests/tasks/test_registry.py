"""The task registry: every registered task has every part of its protocol, and lookups by name or
architecture find it."""

from __future__ import annotations

import typing

import pytest
import transformers

from service.errors import ConfigError
from service.tasks import NAMES, TASKS, BatchedTask, Task, task_named, task_of_architecture
from service.tasks.generation import GENERATE_ROUTE

ROUTES = {"/v1/classify", "/v1/segment", GENERATE_ROUTE}


def _parts(protocol: type) -> set[str]:
    """The members a protocol declares: its annotated attributes and its methods."""
    declared = set(typing.get_type_hints(protocol)) if protocol is Task else set()
    return declared | {n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")}


@pytest.mark.parametrize("name", NAMES)
def test_every_task_has_every_part_of_the_protocol(name: str) -> None:
    task = TASKS[name]
    assert isinstance(task, Task)
    missing = {part for part in _parts(Task) if not hasattr(type(task), part)}
    assert not missing, f"{name} lacks {missing}"
    assert task.name == name and task.input_kind in ("text", "image") and task.route in ROUTES
    assert hasattr(transformers, task.auto_class), task.auto_class
    assert task.architecture.startswith("For")


@pytest.mark.parametrize("name", NAMES)
def test_a_task_the_batcher_serves_can_run_a_batch_and_answer_a_row(name: str) -> None:
    task = TASKS[name]
    if task.generates:
        assert task.route == GENERATE_ROUTE and not isinstance(task, BatchedTask)
    else:
        assert isinstance(task, BatchedTask), f"{name} lacks run_batch or respond"
        assert not {p for p in _parts(BatchedTask) if not hasattr(type(task), p)}


def test_the_four_tasks_are_registered_once_each() -> None:
    assert NAMES == (
        "text-classification",
        "image-classification",
        "semantic-segmentation",
        "text-generation",
    )
    assert len({TASKS[n].architecture for n in NAMES}) == len(NAMES)


def test_lookup_by_name_and_by_architecture() -> None:
    assert task_named("semantic-segmentation") is TASKS["semantic-segmentation"]
    assert task_of_architecture("BertForSequenceClassification") is TASKS["text-classification"]
    assert task_of_architecture("SegformerForSemanticSegmentation") is TASKS["semantic-segmentation"]
    assert task_of_architecture("LlamaForCausalLM") is TASKS["text-generation"]
    assert task_of_architecture("BertModel") is None
    with pytest.raises(ConfigError, match="not supported; use one of text-classification"):
        task_named("object-detection")
