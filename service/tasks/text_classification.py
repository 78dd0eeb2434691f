"""Text classification: a sequence classifier over token ids, served by /v1/classify."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from service.models.confusables import latin_skeleton
from service.models.inputs import check_text, text_digest
from service.models.keyview import CONTENT, INPUT, content
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
    key_views: tuple[str, ...] = (INPUT, CONTENT)

    def prepare(self, model: LoadedModel, raw: str | bytes) -> Item:
        """Token ids of the text's Latin skeleton (`service.models.confusables`: a look-alike spelling is
        the text it imitates), truncated to ``model.max_length``; the digest is over the truncated ids.
        Under ``key_view: content``, ``key`` holds the ids of the text without its leading label, when
        it has one (`service.models.keyview.content`)."""
        text = latin_skeleton(check_text(raw, model.limits))
        ids = _ids(model, text)
        key = None
        if model.key_view == CONTENT and (view := content(text)) != text:
            key = {"input_ids": _ids(model, view)}
        return Item({"input_ids": ids}, text_digest(ids.tolist()), key=key)

    def viewed(self, model: LoadedModel, items: Sequence[Item]) -> list[int]:  # noqa: ARG002 (the Task protocol)
        return [i for i, item in enumerate(items) if item.key is not None]

    def logits(self, model: LoadedModel, items: Sequence[Item], with_key_view: bool) -> torch.Tensor:
        """(B, C); with ``with_key_view``, (B + E, C): the E content views after the texts as sent."""
        if with_key_view:
            items = [*items, *(Item(item.key, item.digest) for item in items if item.key is not None)]
        input_ids, attention_mask = collate_text(model, items)
        result: torch.Tensor = model.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return result


def _ids(model: LoadedModel, text: str) -> torch.Tensor:
    ids = model.tokenizer(text, truncation=True, max_length=model.max_length)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


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
