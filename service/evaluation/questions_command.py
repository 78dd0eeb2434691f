"""``aimserve eval questions``: the σ sweep on multiple-choice question sets (CSV, PNG, JSON).

Files written to ``--out``: ``questions.csv`` (one row per task and σ, columns of `choice_table`),
``questions.png`` (accuracy vs σ per task, exact and sampled, with chance) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import os
import time

from service.evaluation import plots
from service.evaluation.choices import DEFAULT_TASKS
from service.evaluation.commands import common, progress
from service.evaluation.report import write_csv, write_json
from service.evaluation.spec import check_positive, parse_grid

DEFAULT_PER_TASK = 100


def questions_command(args: argparse.Namespace) -> int:
    from service.evaluation.choices import load_choices
    from service.evaluation.forward import open_model, require_task
    from service.evaluation.questions import choice_table, letter_ids, next_token_logits
    from service.tasks import TEXT_GENERATION

    sigmas = parse_grid(args.sigmas, setting="--sigmas")
    repeats = check_positive(args.repeats, setting="--repeats")
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not names:
        from service.errors import BadInput

        raise BadInput(f"--tasks is empty; name bigbench tasks or task.json files, e.g. {DEFAULT_TASKS}")
    limit = args.limit or DEFAULT_PER_TASK
    choices = [c for name in names for c in load_choices(name, limit=limit, seed=args.seed)]
    out = common(args)
    model = open_model(args.model, args.task)
    require_task(model, (TEXT_GENERATION,), "aimserve eval questions")
    ids = letter_ids(model.tokenizer, max(len(c.options) for c in choices))
    started = time.perf_counter()
    logits = next_token_logits(model, choices, progress=progress())
    forward_s = time.perf_counter() - started
    rows = choice_table(logits, choices, ids, sigmas, repeats, progress=progress())
    write_csv(out / "questions.csv", rows)
    title = f"{model.name}: multiple choice, next-token letter ({len(choices)} questions, {repeats} repeats)"
    plots.plot_questions(out / "questions.png", title, rows)
    clean = {str(r["task"]): r for r in rows if r["sigma"] == sigmas[0]}
    summary = {
        "model": model.name, "tasks": names, "questions": len(choices), "per_task_limit": limit,
        "seed": args.seed, "repeats": repeats, "sigmas": sigmas,
        "at_first_sigma": {t: {"accuracy": r["accuracy_exact"], "chance": r["chance"],
                                "questions": r["questions"]} for t, r in clean.items()},
        "forward_seconds": round(forward_s, 1),
        "sweep_seconds": round(time.perf_counter() - started - forward_s, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    write_json(out / "summary.json", summary)
    for task, r in clean.items():
        acc, chance = float(r["accuracy_exact"]), float(r["chance"])
        print(f"{task}: σ = {sigmas[0]:g} accuracy {acc:.3f} (chance {chance:.3f})")
    return 0
