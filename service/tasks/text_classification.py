"""Text classification: a sequence classifier over token ids, served by /v1/classify."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from service.models.inputs import check_text, text_digest
from service.models.keyview import INPUT
from service.models.loaded import Item, LoadedModel
from service.tasks.base import InputKind
from service.tasks.classes import CLASSIFY_ROUTE, Classifier


class TextClassification(Classifier):
    name = "text-classification"
    architecture = "ForSequenceClassification"
    auto_class = "AutoModelForSequenceClassification"
    input_kind: InputKind = "text"
    route = CLASSIFY_ROUTE
    generates = False
    key_views: tuple[str, ...] = (INPUT,)

    def prepare(self, model: LoadedModel, raw: str | bytes) -> Item:
        """Token ids, truncated to ``model.max_length``; the digest is taken over the truncated ids."""
        text = check_text(raw, model.limits)
        ids = model.tokenizer(text, truncation=True, max_length=model.max_length)["input_ids"]
        return Item({"input_ids": torch.tensor(ids, dtype=torch.long)}, text_digest(ids))

    def logits(self, model: LoadedModel, items: Sequence[Item], with_key_view: bool) -> torch.Tensor:  # noqa: ARG002 (the Task protocol)
        input_ids, attention_mask = collate_text(model, items)
        result: torch.Tensor = model.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return result


def collate_text(model: LoadedModel, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token ids to the longest item: (B, T) ids and (B, T) attention mask on the device."""
    pad_id = model.tokenizer.pad_token_id or 0
    longest = max(len(item.tensors["input_ids"]) for item in items)
    input_ids = torch.full((len(items), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), longest), dtype=torch.long)
    for row, item in enumerate(items):
        ids = item.tensors["input_ids"]
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids.to(model.device), attention_mask.to(model.device)
