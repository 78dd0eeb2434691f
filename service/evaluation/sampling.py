"""Keyed, repeatable modulation of a fixed set of logits, scored against labels and the clean predictions.

The sweeps call the serving path's own `modulate` on precomputed logits, so what is measured is what a
tenant gets. Row keys come from `derive_row_key` with a fixed evaluation secret: repeat r of item i always
gets the same noise, different repeats get independent noise, and a sweep is reproducible bit for bit.
Within one repeat the same keys are used at every σ (common random numbers), so a curve is smooth in σ and
differences between σ values are not drowned by sampling noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from service.evaluation.metrics import IGNORE, confusion, predictions
from service.modulation import ModulationBatch, RowKey, RowSpec, derive_row_key, input_digest, modulate

EVAL_SECRET = b"aimserve/evaluation/v1"
MAX_CHUNK_ELEMENTS = 1 << 22  # logits modulated at once: bounds memory to ~16 MB per chunk

RowMaker = Callable[[RowKey], RowSpec]


def repeat_keys(count: int, repeat: int) -> list[RowKey]:
    """Row keys of items 0..count-1 for one repeat (a stand-in tenant per repeat, the index as input)."""
    tenant = f"evaluation-repeat-{repeat}"
    return [derive_row_key(EVAL_SECRET, tenant, input_digest(i.to_bytes(8, "little"))) for i in range(count)]


@dataclass(frozen=True)
class Outcome:
    """One modulated pass over the dataset.

    cm: (C, C) int64 confusion vs the labels (row = true class), or None when not asked for (a
    vocabulary-sized C would need C² counters); correct: scored outputs whose modulated argmax is the
    label; agree: those whose modulated argmax equals the clean argmax; scored: their number.
    """

    cm: torch.Tensor | None
    correct: int
    agree: int
    scored: int

    @property
    def fidelity(self) -> float:
        return self.agree / self.scored if self.scored else 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored if self.scored else 0.0

    @property
    def confusion(self) -> torch.Tensor:
        """The confusion matrix; only for outcomes computed ``with_confusion``."""
        if self.cm is None:
            raise ValueError("this outcome was computed without a confusion matrix")
        return self.cm


def chunk_rows(logits: torch.Tensor) -> int:
    """Items per chunk so that a chunk holds at most MAX_CHUNK_ELEMENTS logits (at least one item)."""
    per_item = max(1, logits[0].numel()) if len(logits) else 1
    return max(1, MAX_CHUNK_ELEMENTS // per_item)


def modulated_outcome(
    logits: torch.Tensor,
    labels: torch.Tensor,
    clean: torch.Tensor,
    keys: Sequence[RowKey],
    make_row: RowMaker,
    *,
    with_confusion: bool = True,
) -> Outcome:
    """Modulate every item with ``make_row(key)`` and score the argmax.

    Args:
        logits: (N, C) or (N, C, H, W) float32 clean logits.
        labels: (N,) or (N, H, W) int64 true classes (IGNORE = not scored).
        clean: the clean predictions, same shape as ``labels``.
        keys: N row keys.
        make_row: builds the item's RowSpec from its key (σ, focus).
        with_confusion: also count the (C, C) confusion matrix.
    """
    num_classes = logits.shape[1]
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64) if with_confusion else None
    correct = agree = scored = 0
    step = chunk_rows(logits)
    for start in range(0, len(logits), step):
        part = slice(start, start + step)
        rows = [make_row(k) for k in keys[part]]
        batch = ModulationBatch.build(rows, num_classes, logits.device)
        pred = predictions(modulate(logits[part], batch))
        if cm is not None:
            cm += confusion(pred, labels[part], num_classes)
        mask = labels[part] != IGNORE
        correct += int((pred == labels[part])[mask].sum())
        agree += int((pred == clean[part])[mask].sum())
        scored += int(mask.sum())
    return Outcome(cm, correct, agree, scored)


def sweep(
    logits: torch.Tensor,
    labels: torch.Tensor,
    settings: Sequence[RowMaker],
    repeats: int,
    *,
    desc: str,
    progress: bool = False,
) -> list[list[Outcome]]:
    """``[setting index][repeat]`` outcomes: every repeat's keys modulated with each setting's rows (the
    same keys at every setting: common random numbers). ``desc`` labels the progress bar."""
    clean = predictions(logits)
    out: list[list[Outcome]] = [[] for _ in settings]
    with tqdm(total=len(settings) * repeats, desc=desc, unit="pass", disable=not progress) as bar:
        for r in range(repeats):
            keys = repeat_keys(len(logits), r)
            for i, make_row in enumerate(settings):
                out[i].append(modulated_outcome(logits, labels, clean, keys, make_row))
                bar.update(1)
    return out
