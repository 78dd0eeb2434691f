"""Preset ``minilm-sentiment-ft``: the MiniLM-L6 encoder of ``minilm-sentiment`` fine-tuned end to end.

Same tweets, same 6,000 training texts and same 1,500 held-out tweets as ``minilm-sentiment``
(``sentiment.sample_split``), same saved architecture (``BertForSequenceClassification``: encoder ->
pooler([CLS]) -> classifier); here every weight (embeddings, the six layers, pooler, classifier) is trained,
with dropout on, on tokenised texts rather than on frozen features. ``build_finetuned`` is the whole build
for any recipe and split: the preset runs it on the full recipe, the tests on a few dozen rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from service.presets.common import seed_everything
from service.presets.sentiment import new_classifier, sample_split, save_classifier
from service.presets.sources import TextSplit

_EVAL_BATCH = 64
_LENGTH_GROUP = 16  # batches per length-sorted group: little padding, still shuffled


@dataclass(frozen=True)
class FineTuneRecipe:
    """AdamW with linear warmup then linear decay to 0, gradients clipped to norm 1; seeded."""

    train_texts: int = 6000
    epochs: int = 1
    batch: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of the steps
    max_length: int = 128  # training tokens per text; serving truncates at 512
    seed: int = 0


RECIPE = FineTuneRecipe()


def build(out: Path) -> dict[str, Any]:
    """Fine-tune on the seeded training sample, save the classifier and the held-out tweets into ``out``."""
    train, test = sample_split(RECIPE.train_texts)
    return build_finetuned(out, train, test, RECIPE)


def build_finetuned(out: Path, train: TextSplit, test: TextSplit, recipe: FineTuneRecipe) -> dict[str, Any]:
    """Fine-tune a new classifier on ``train``, save it with ``test`` as its held-out split, check the saved
    folder through the loader; returns the manifest fields (metrics on ``test``, per-epoch training loss)."""
    seed_everything(recipe.seed)
    tokenizer, classifier = new_classifier()
    losses = fine_tune(classifier, tokenizer, train, recipe)
    classifier.eval()
    test_logits = predict(classifier, tokenizer, test.texts)
    fields = save_classifier(out, classifier, tokenizer, test, test_logits)
    fields["sizes"]["train"] = len(train.texts)
    training = {**asdict(recipe), "train_texts": len(train.texts), "epoch_losses": losses}
    # noise keyed on the text without a leading label, as minilm-sentiment's (service.models.keyview)
    return {**fields, "training": {**training, "trained": "every weight, end to end"}, "key_view": "content"}


def fine_tune(classifier: Any, tokenizer: Any, data: TextSplit, recipe: FineTuneRecipe) -> list[float]:
    """Train every parameter of ``classifier`` on ``data``; returns the mean training loss of each epoch."""
    ids = tokenizer(data.texts, truncation=True, max_length=recipe.max_length)["input_ids"]
    labels = torch.tensor(data.labels)
    total = math.ceil(len(ids) / recipe.batch) * recipe.epochs
    warmup = max(1, round(total * recipe.warmup))
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, parameter in classifier.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    generator = torch.Generator().manual_seed(recipe.seed)
    classifier.train()
    losses = []
    for _ in range(recipe.epochs):
        summed = 0.0
        for rows in _batches([len(row) for row in ids], recipe.batch, generator):
            batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
            loss = classifier(**batch, labels=labels[rows]).loss
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(classifier.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            summed += float(loss.detach()) * len(rows)
        losses.append(round(summed / len(ids), 4))
    return losses


def _batches(lengths: list[int], size: int, generator: torch.Generator) -> list[list[int]]:
    """A seeded shuffle into batches of ``size``, texts of similar length together, batch order shuffled."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches = []
    for start in range(0, len(order), size * _LENGTH_GROUP):
        group = sorted(order[start : start + size * _LENGTH_GROUP], key=lambda i: lengths[i])
        batches += [group[i : i + size] for i in range(0, len(group), size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def predict(classifier: Any, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    """Eval-mode logits (N, classes) in the order of ``texts``, truncated at 512 tokens like the loader."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    logits = torch.empty(len(texts), classifier.config.num_labels)
    with torch.inference_mode():
        for start in range(0, len(order), _EVAL_BATCH):
            rows = order[start : start + _EVAL_BATCH]
            batch = tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=512, return_tensors="pt"
            )
            logits[rows] = classifier(**batch).logits.float()
    return logits
