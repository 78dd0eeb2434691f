"""The ``aimserve eval`` commands: check settings, load the model and data, sweep, write CSV/PNG/JSON.

Each returns the process exit code; bad settings raise BadInput (the CLI prints it and exits with 2).
Files written to ``--out``: ``<experiment>.csv``, ``<experiment>.png``, ``summary.json`` (plus
``focus_table.md`` and ``samples.txt`` where noted).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from service.errors import BadInput
from service.evaluation import plots
from service.evaluation.report import prepare_out_dir, write_csv, write_json
from service.evaluation.spec import check_positive, parse_grid
from service.evaluation.summary import agreement, logit_scale, stages
from service.tasks import IMAGE_CLASSIFICATION, SEMANTIC_SEGMENTATION, TEXT_CLASSIFICATION, TEXT_GENERATION

DEFAULT_LIMIT = {SEMANTIC_SEGMENTATION.name: 100}
DEFAULT_LIMIT_OTHER = 1000
CLASSIFY = (TEXT_CLASSIFICATION, IMAGE_CLASSIFICATION, SEMANTIC_SEGMENTATION)


def common(args: argparse.Namespace) -> Path:
    """Checks shared by every command (before any model is loaded); returns the output folder."""
    if args.limit is not None:
        check_positive(args.limit, setting="--limit")
    check_positive(args.batch_size, setting="--batch-size")
    check_positive(args.threads, setting="--threads")
    out = prepare_out_dir(args.out)
    torch.set_num_threads(args.threads)
    return out


def progress() -> bool:
    return sys.stderr.isatty()


def classified(args: argparse.Namespace, command: str) -> tuple[Any, torch.Tensor, torch.Tensor, float]:
    """Model, clean logits, truth and forward seconds for a classification or segmentation command."""
    from service.evaluation.datasets import load_eval_set
    from service.evaluation.forward import compute_logits, open_model, require_task

    model = open_model(args.model, args.task)
    require_task(model, CLASSIFY, command)
    limit = args.limit or DEFAULT_LIMIT.get(model.task, DEFAULT_LIMIT_OTHER)
    data = load_eval_set(model, args.data, limit)
    started = time.perf_counter()
    logits = compute_logits(model, data.inputs, batch_size=args.batch_size, progress=progress())
    if logits.dim() == 4 and tuple(logits.shape[2:]) != tuple(data.labels.shape[1:]):
        raise BadInput(f"--data masks are {tuple(data.labels.shape[1:])}, images {tuple(logits.shape[2:])}")
    return model, logits, data.labels, time.perf_counter() - started


def utility_command(args: argparse.Namespace) -> int:
    """``eval utility``: utility.csv (one row per σ), utility.png, summary.json."""
    from service.evaluation.utility import utility_table

    sigmas = parse_grid(args.sigmas, setting="--sigmas")
    repeats = check_positive(args.repeats, setting="--repeats")
    max_exact = check_positive(args.exact_pixels, setting="--exact-pixels")
    out = common(args)
    model, logits, labels, forward_s = classified(args, "aimserve eval utility")
    started = time.perf_counter()
    rows = utility_table(logits, labels, sigmas, repeats, max_exact=max_exact, progress=progress())
    sweep_s = time.perf_counter() - started
    write_csv(out / "utility.csv", rows)
    segmentation = logits.dim() == 4
    chance = 1.0 / logits.shape[1]
    metric = "pixel accuracy" if segmentation else "accuracy"
    curves: dict[str, tuple[list[float], list[float] | None]] = {
        f"{metric} (sampled, ±1 sd)": _col(rows, "accuracy_mean", "accuracy_std"),
        "fidelity (sampled, ±1 sd)": _col(rows, "fidelity_mean", "fidelity_std"),
    }
    if segmentation:
        curves["mIoU (sampled, ±1 sd)"] = _col(rows, "miou_mean", "miou_std")
    exact = {
        f"{metric} (exact)": [float(r["accuracy_exact"]) for r in rows],
        "fidelity (exact)": [float(r["fidelity_exact"]) for r in rows],
    }
    title = f"{model.name}: utility modulation ({len(logits)} inputs, {repeats} keyed repeats)"
    plots.plot_utility(out / "utility.png", title, sigmas, curves, exact, chance)
    summary = {
        "model": model.name,
        "task": model.task,
        "inputs": len(logits),
        "scored_outputs": int(rows[0]["scored"]),
        "classes": int(logits.shape[1]),
        "repeats": repeats,
        "stages_exact": stages(sigmas, [float(r["accuracy_exact"]) for r in rows], chance),
        "exact_vs_sampled": {m: agreement(rows, m) for m in ("accuracy", "fidelity")},
        "logit_scale": logit_scale(logits),
        "forward_seconds": round(forward_s, 2),
        "sweep_seconds": round(sweep_s, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if segmentation:
        summary["miou_clean"] = rows[0]["miou_mean"]
        summary["stages_miou"] = stages(sigmas, [float(r["miou_mean"]) for r in rows], 0.0)
    write_json(out / "summary.json", summary)
    print(
        f"{model.name}: clean {metric} {float(rows[0]['accuracy_mean']):.4f}; wrote {out}/utility.csv, .png"
    )
    return 0


def _col(rows: list[dict[str, float | int]], mean: str, std: str) -> tuple[list[float], list[float]]:
    return [float(r[mean]) for r in rows], [float(r[std]) for r in rows]


def generate_command(args: argparse.Namespace) -> int:
    """``eval generate``: generate.csv (one row per σ), generate.png, samples.txt, summary.json."""
    from service.evaluation.forward import open_model, require_task
    from service.evaluation.generate import generation_table, load_questions, run_generation, samples_text

    sigmas = parse_grid(args.sigmas, setting="--sigmas")
    if not 1 <= args.max_new_tokens <= 512:
        raise BadInput(f"--max-new-tokens must be between 1 and 512, got {args.max_new_tokens}")
    questions = load_questions(Path(args.data) if args.data else None)
    out = common(args)
    questions = questions[: args.limit] if args.limit else questions
    model = open_model(args.model, args.task)
    require_task(model, (TEXT_GENERATION,), "aimserve eval generate")
    started = time.perf_counter()
    answers = run_generation(model, questions, sigmas, max_new_tokens=args.max_new_tokens)
    table = generation_table(answers, sigmas)
    write_csv(out / "generate.csv", table)
    (out / "samples.txt").write_text(samples_text(answers), encoding="utf-8")
    kinds = [k.removeprefix("accuracy_") for k in table[0] if k.startswith("accuracy_")]
    by_kind = {"all": [float(r["accuracy"]) for r in table]}
    by_kind.update({k: [float(r[f"accuracy_{k}"]) for r in table] for k in kinds})
    title = f"{model.name}: {len(questions)} short-answer questions, greedy, modulated"
    fidelity = [float(r["step_fidelity"]) for r in table]
    plots.plot_generation(out / "generate.png", title, sigmas, by_kind, fidelity)
    summary = {"model": model.name, "questions": len(questions), "max_new_tokens": args.max_new_tokens,
               "seconds": round(time.perf_counter() - started, 1), "rows": table}  # fmt: skip
    write_json(out / "summary.json", summary)
    for row in table:
        print(f"σ = {float(row['sigma']):g}: accuracy {float(row['accuracy']):.3f}")
    return 0
