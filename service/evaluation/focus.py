"""The focus sweep (the paper's Table 1): recall of the focused classes and the overall change against σ_f.

Every item (every pixel) gets the folded-normal boost on the focused classes' logits, keyed like the
serving path; optional utility noise ``sigma`` is applied too (0 = focus alone, the paper's setting).
Scores are means over ``repeats`` keyed passes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import torch
from tqdm import tqdm

from service.evaluation.metrics import accuracy, mean_iou, predictions, recall
from service.evaluation.sampling import Outcome, modulated_outcome, repeat_keys
from service.modulation import BOOST, RowKey, RowSpec

Table = list[dict[str, float | int]]


def focus_outcomes(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_ids: Sequence[int],
    strengths: Sequence[float],
    *,
    repeats: int,
    sigma: float = 0.0,
    sign: int = BOOST,
    progress: bool = False,
) -> list[list[Outcome]]:
    """``[strength index][repeat]`` outcomes with focus on ``class_ids`` at each σ_f."""
    clean = predictions(logits)
    ids = tuple(class_ids)
    out: list[list[Outcome]] = [[] for _ in strengths]
    with tqdm(total=len(strengths) * repeats, desc="focus sweep", unit="pass", disable=not progress) as bar:
        for r in range(repeats):
            keys = repeat_keys(len(logits), r)
            for i, strength in enumerate(strengths):

                def row(key: RowKey, f: float = strength) -> RowSpec:
                    return RowSpec(sigma=sigma, key=key, focus_ids=ids, focus_strength=f, focus_sign=sign)

                out[i].append(modulated_outcome(logits, labels, clean, keys, row))
                bar.update(1)
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else float("nan")


def _precision(cm: torch.Tensor, cls: int) -> float:
    predicted = int(cm[:, cls].sum())
    return float(cm[cls, cls]) / predicted if predicted else float("nan")


def focus_table(
    outcomes: list[list[Outcome]],
    strengths: Sequence[float],
    class_ids: Sequence[int],
    labels: Sequence[str],
    *,
    segmentation: bool,
) -> Table:
    """One row per σ_f: per focused class recall/precision (mean over repeats) and recall change from the
    first strength; overall accuracy (pixel accuracy), mIoU for segmentation, fidelity, and their changes.

    Recall of a class that never occurs in the labels is NaN (written as ``nan``).
    """
    rows: Table = []
    base: dict[str, float] = {}
    for i, strength in enumerate(strengths):
        cms = [o.confusion for o in outcomes[i]]
        row: dict[str, float | int] = {"strength": strength}
        for cls in class_ids:
            name = labels[cls]
            row[f"recall_{name}"] = _mean([recall(cm, cls) for cm in cms])
            row[f"recall_{name}_delta"] = row[f"recall_{name}"] - base.get(name, row[f"recall_{name}"])
            row[f"precision_{name}"] = _mean([_precision(cm, cls) for cm in cms])
            base.setdefault(name, float(row[f"recall_{name}"]))
        overall = {"accuracy": _mean([accuracy(cm) for cm in cms])}
        if segmentation:
            overall["miou"] = _mean([mean_iou(cm) for cm in cms])
        for key, value in overall.items():
            row[key] = value
            row[f"{key}_delta"] = value - base.setdefault(key, value)
        row["fidelity"] = _mean([o.fidelity for o in outcomes[i]])
        row["repeats"] = len(outcomes[i])
        rows.append(row)
    return rows


def table1_markdown(table: Table, class_names: Sequence[str], *, segmentation: bool) -> str:
    """The paper's Table 1 layout: one line per class, first column the value at the first σ_f (in %),
    then the change in points at each further σ_f; a last line for the overall metric."""
    head = [f"σ_f = {float(r['strength']):g}" for r in table]
    lines = ["| class | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    metrics = [(f"recall_{n}", n) for n in class_names]
    metrics.append(("miou", "avg. mIoU") if segmentation else ("accuracy", "accuracy"))
    for key, title in metrics:
        cells = [f"{100.0 * float(table[0][key]):.2f}"]
        cells += [f"{100.0 * (float(r[key]) - float(table[0][key])):+.2f}" for r in table[1:]]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
