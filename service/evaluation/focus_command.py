"""``aimserve eval focus``: focus.csv (a row per σ_f and run), focus.png, focus_table.md, summary.json.

By default the listed classes are focused together (one request's focus set). With ``--separately`` each
class is focused alone in its own sweep, as in the paper's Table 1, and each run's overall change is
reported beside it.
"""

from __future__ import annotations

import argparse
import math

from service.errors import BadInput
from service.evaluation import plots
from service.evaluation.commands import classified, common, progress
from service.evaluation.focus import (
    Table,
    budget_markdown,
    focus_outcomes,
    focus_table,
    table1_markdown,
    within_budget,
)
from service.evaluation.report import write_csv, write_json
from service.evaluation.spec import check_positive, parse_classes, parse_grid
from service.modulation import BOOST, SUPPRESS


def _series(table: Table, key: str) -> list[float]:
    return [float(r[key]) for r in table]


def focus_command(args: argparse.Namespace) -> int:
    """Check settings, sweep σ_f with keyed focus noise on precomputed logits, write the results."""
    strengths = parse_grid(args.strengths, setting="--strengths")
    repeats = check_positive(args.repeats, setting="--repeats")
    if not (math.isfinite(args.sigma) and args.sigma >= 0):
        raise BadInput(f"--sigma must be a finite number >= 0, got {args.sigma}")
    if args.max_loss is not None and not args.separately:
        raise BadInput("--max-loss needs --separately (one budget per focused class)")
    if args.max_loss is not None and not (math.isfinite(args.max_loss) and args.max_loss >= 0):
        raise BadInput(f"--max-loss must be a finite number of points >= 0, got {args.max_loss}")
    out = common(args)
    model, logits, labels, forward_s = classified(args, "aimserve eval focus")
    class_ids = parse_classes(args.classes, model.labels)
    names = [model.labels[i] for i in class_ids]
    segmentation = logits.dim() == 4
    overall_key, overall_name = ("miou", "mIoU") if segmentation else ("accuracy", "accuracy")

    def sweep(ids: list[int], column: str | None) -> Table:
        outcomes = focus_outcomes(
            logits,
            labels,
            ids,
            strengths,
            repeats=repeats,
            sigma=args.sigma,
            sign=SUPPRESS if args.suppress else BOOST,
            progress=progress(),
        )
        return focus_table(
            outcomes, strengths, ids, model.labels, segmentation=segmentation, focus_column=column
        )

    if args.separately:
        tables = {name: sweep([cls], name) for cls, name in zip(class_ids, names, strict=True)}
        rows = [row for table in tables.values() for row in table]
        lines = [(n, t, "recall") for n, t in tables.items()]
        lines += [(f"{overall_name} (focus on {n})", t, overall_key) for n, t in tables.items()]
        per_class = {n: _series(t, "recall") for n, t in tables.items()}
        overall = {f"{overall_name} (focus on {n})": _series(t, overall_key) for n, t in tables.items()}
    else:
        rows = sweep(class_ids, None)
        lines = [(n, rows, f"recall_{n}") for n in names] + [(overall_name, rows, overall_key)]
        per_class = {n: _series(rows, f"recall_{n}") for n in names}
        overall = {overall_name: _series(rows, overall_key)}
        if segmentation:
            overall["pixel accuracy"] = _series(rows, "accuracy")
    markdown = table1_markdown(lines)
    write_csv(out / "focus.csv", rows)
    (out / "focus_table.md").write_text(markdown, encoding="utf-8")
    verb = "suppress" if args.suppress else "boost"
    how = "each alone" if args.separately else "together"
    title = (
        f"{model.name}: focus, {verb} {', '.join(names)} ({how}; σ = {args.sigma:g}; {len(logits)} inputs)"
    )
    plots.plot_focus(out / "focus.png", title, strengths, per_class, overall)
    summary: dict[str, object] = {
        "model": model.name,
        "task": model.task,
        "inputs": len(logits),
        "classes": names,
        "separately": bool(args.separately),
        "sign": verb,
        "sigma": args.sigma,
        "repeats": repeats,
        "forward_seconds": round(forward_s, 2),
    }
    if args.max_loss is not None:
        budget = within_budget(tables, overall_key, args.max_loss / 100)
        write_csv(out / "budget.csv", budget)
        budget_md = budget_markdown(budget, overall_key, overall_name, args.max_loss / 100)
        (out / "budget.md").write_text(budget_md, encoding="utf-8")
        summary["max_loss_points"] = args.max_loss
        markdown += "\n" + budget_md
    write_json(out / "summary.json", summary)
    print(markdown, end="")
    return 0
