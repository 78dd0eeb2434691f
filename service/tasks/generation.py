"""Text generation: a causal LM decoded token by token by a generation engine, served by /v1/generate
(and the OpenAI-compatible routes). Its classes are the vocabulary; prompts go to the engine as text, so
there is no per-item preparation and no batch forward here: the engine (``service.serving.generation``)
owns both."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from service.models.heldout import HeldOut, generation_rows
from service.models.keyview import INPUT
from service.models.loaded import Item, LoadedModel
from service.tasks.base import Calibration, InputKind, unsupported

GENERATE_ROUTE = "/v1/generate"


class TextGeneration:
    name = "text-generation"
    architecture = "ForCausalLM"
    auto_class = "AutoModelForCausalLM"
    input_kind: InputKind = "text"
    route = GENERATE_ROUTE
    generates = True
    key_views: tuple[str, ...] = (INPUT,)

    def prepare(self, model: LoadedModel, raw: str | bytes) -> Item:  # noqa: ARG002 (the Task protocol)
        raise unsupported(model, "classification")

    def viewed(self, model: LoadedModel, items: Sequence[Item]) -> list[int]:  # noqa: ARG002 (the Task protocol)
        return []

    def logits(self, model: LoadedModel, items: Sequence[Item], with_key_view: bool) -> torch.Tensor:  # noqa: ARG002 (the Task protocol)
        raise unsupported(model, "classification")

    def calibrate(self, model: LoadedModel, data: HeldOut, limit: int) -> Calibration:
        return generation_rows(model, data, limit)
