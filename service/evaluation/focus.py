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

from service.evaluation.metrics import accuracy, mean_iou, recall
from service.evaluation.sampling import Outcome, RowMaker, sweep
from service.modulation import BOOST, RowSpec

Table = list[dict[str, float | int | str]]


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
    ids = tuple(class_ids)

    def rows(f: float) -> RowMaker:
        return lambda key: RowSpec(sigma=sigma, key=key, focus_ids=ids, focus_strength=f, focus_sign=sign)

    return sweep(logits, labels, [rows(f) for f in strengths], repeats, desc="focus sweep", progress=progress)


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
    focus_column: str | None = None,
) -> Table:
    """One row per σ_f: per focused class recall/precision (mean over repeats) and recall change from the
    first strength; overall accuracy (pixel accuracy), mIoU for segmentation, fidelity, and their changes.

    Columns are ``recall_<class>``, ``recall_<class>_delta``, ``precision_<class>``; with ``focus_column``
    (one class only) they are ``recall``, ``recall_delta``, ``precision`` after a first column ``focus``
    holding that name. Recall of a class that never occurs in the labels is NaN (written as ``nan``).
    """
    rows: Table = []
    base: dict[str, float] = {}
    for i, strength in enumerate(strengths):
        cms = [o.confusion for o in outcomes[i]]
        row: dict[str, float | int | str] = {} if focus_column is None else {"focus": focus_column}
        row["strength"] = strength
        for cls in class_ids:
            suffix = "" if focus_column is not None else f"_{labels[cls]}"
            value = _mean([recall(cm, cls) for cm in cms])
            row[f"recall{suffix}"] = value
            row[f"recall{suffix}_delta"] = value - base.setdefault(f"recall{suffix}", value)
            row[f"precision{suffix}"] = _mean([_precision(cm, cls) for cm in cms])
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


def table1_markdown(lines: Sequence[tuple[str, Table, str]]) -> str:
    """The paper's Table 1 layout. Each of ``lines`` is (title, table, column): the value at the table's
    first σ_f (in %), then the change in points at each further σ_f. All tables share one σ_f grid."""
    first = lines[0][1]
    head = [f"σ_f = {float(r['strength']):g}" for r in first]
    out = ["| | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for title, table, key in lines:
        base = float(table[0][key])
        cells = [f"{100.0 * base:.2f}"] + [f"{100.0 * (float(r[key]) - base):+.2f}" for r in table[1:]]
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def within_budget(tables: dict[str, Table], overall_key: str, max_loss: float) -> Table:
    """Per focused class (``tables``: one ``focus_table(..., focus_column=name)`` each), the largest σ_f of
    the grid up to which the overall metric never drops by more than ``max_loss`` (a fraction: 0.005 is
    half a point), with the class's recall at the first σ_f, its gain there and the overall change there.
    """
    rows: Table = []
    for name, table in tables.items():
        kept = table[0]
        for row in table:
            if float(row[f"{overall_key}_delta"]) < -max_loss:
                break
            kept = row
        rows.append(
            {
                "focus": name,
                "strength": kept["strength"],
                "recall_at_0": table[0]["recall"],
                "recall_gain": kept["recall_delta"],
                f"{overall_key}_delta": kept[f"{overall_key}_delta"],
            }
        )
    return rows


def budget_markdown(rows: Table, overall_key: str, overall_name: str, max_loss: float) -> str:
    """``within_budget`` rows as a Markdown table, percentages and points."""
    out = [
        f"| class | σ_f within {100 * max_loss:g} point of {overall_name} | recall at σ_f = 0 | recall gain "
        f"| {overall_name} change |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['focus']} | {float(r['strength']):g} | {100 * float(r['recall_at_0']):.2f} "
            f"| {100 * float(r['recall_gain']):+.2f} | {100 * float(r[f'{overall_key}_delta']):+.2f} |"
        )
    return "\n".join(out) + "\n"
