"""``aimserve eval utility | focus | generate | questions | coherence``, ``aimserve calibrate``: arguments.

`register` adds the commands to the main parser (service/cli.py calls it). Each command's ``run`` checks
every cheap setting first (exit code 2 with a message naming the setting, via BadInput), then loads the
model and does the work in `service.evaluation.commands`. Nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
from typing import Any

from service.evaluation.choices import DEFAULT_TASKS


def _run_utility(args: argparse.Namespace) -> int:
    from service.evaluation.commands import utility_command

    return utility_command(args)


def _run_focus(args: argparse.Namespace) -> int:
    from service.evaluation.focus_command import focus_command

    return focus_command(args)


def _run_generate(args: argparse.Namespace) -> int:
    from service.evaluation.commands import generate_command

    return generate_command(args)


def _run_questions(args: argparse.Namespace) -> int:
    from service.evaluation.questions_command import questions_command

    return questions_command(args)


def _run_coherence(args: argparse.Namespace) -> int:
    from service.evaluation.coherence import coherence_command

    return coherence_command(args)


def _run_calibrate(args: argparse.Namespace) -> int:
    if args.from_traffic is not None:
        from service.evaluation.traffic_command import from_traffic_command

        return from_traffic_command(args)
    from service.evaluation.calibrate import calibrate_command

    return calibrate_command(args)


_DATA_HELP = (
    "evaluation data: JSONL of {text, label}, a folder of images per class, or a folder with "
    "images/ and masks/ (default: the preset's held-out split)"
)
_QUESTIONS_HELP = (
    'questions: JSONL of {"kind", "question", "answers": [...]} (default: the 30 built-in questions)'
)


def _model_options(
    p: argparse.ArgumentParser,
    *,
    default_model: str | None = None,
    data_help: str = _DATA_HELP,
    limit_help: str = "use at most this many inputs (default 1000; 100 images for segmentation)",
    model_required: bool = True,
) -> None:
    p.add_argument(
        "--model",
        required=default_model is None and model_required,
        default=default_model,
        help="preset name or model directory",
    )
    p.add_argument("--task", default=None, help="override the task inferred from the model's config")
    p.add_argument("--data", default=None, help=data_help)
    p.add_argument("--limit", type=int, default=None, help=limit_help)
    p.add_argument("--batch-size", type=int, default=32, help="items per model forward pass")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the CPU is shared)")


def _out_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="directory for the CSV, PNG and JSON results")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``eval`` (``utility``, ``focus``, ``generate``, ``questions``, ``coherence``) and ``calibrate``."""
    ev = sub.add_parser("eval", help="the paper's experiments on a served model (CSV + PNG)")
    esub = ev.add_subparsers(dest="experiment", required=True)

    util = esub.add_parser("utility", help="accuracy / mIoU and fidelity vs σ, sampled and exact")
    _model_options(util)
    util.add_argument("--sigmas", default="0:20:0.2", help="start:stop:step or a list a,b,c (logit units)")
    util.add_argument("--repeats", type=int, default=5, help="keyed sampling passes per σ")
    util.add_argument(
        "--exact-pixels", type=int, default=20_000, help="segmentation: pixels sampled for the exact curve"
    )
    _out_option(util)
    util.set_defaults(run=_run_utility)

    focus = esub.add_parser("focus", help="recall of focused classes and overall change vs σ_f (Table 1)")
    _model_options(focus)
    focus.add_argument("--classes", required=True, help="comma-separated class names (or ids) to focus on")
    focus.add_argument("--strengths", default="0:2.4:0.2", help="σ_f grid: start:stop:step or a list")
    focus.add_argument("--sigma", type=float, default=0.0, help="utility noise applied together (default 0)")
    focus.add_argument(
        "--max-loss",
        type=float,
        default=None,
        help="with --separately: per class, the largest σ_f within this many points of overall loss",
    )
    focus.add_argument("--suppress", action="store_true", help="suppress the classes instead of boosting")
    focus.add_argument(
        "--separately", action="store_true", help="focus each class alone, one sweep each (Table 1)"
    )
    focus.add_argument("--repeats", type=int, default=3, help="keyed sampling passes per σ_f")
    _out_option(focus)
    focus.set_defaults(run=_run_focus)

    gen = esub.add_parser("generate", help="LLM short answers under each σ: accuracy and samples")
    _model_options(
        gen, default_model="smollm2-135m", data_help=_QUESTIONS_HELP, limit_help="the first N questions only"
    )
    gen.add_argument("--sigmas", default="0,0.5,1,2", help="start:stop:step or a list a,b,c (logit units)")
    gen.add_argument("--max-new-tokens", type=int, default=24, help="tokens generated per answer")
    _out_option(gen)
    gen.set_defaults(run=_run_generate)

    qs = esub.add_parser("questions", help="LLM multiple choice (bigbench JSON tasks): accuracy vs σ")
    _model_options(
        qs,
        default_model="smollm2-135m",
        data_help="unused (see --tasks)",
        limit_help="questions per task (default 100)",
    )
    qs.add_argument(
        "--tasks",
        default=DEFAULT_TASKS,
        help="comma-separated bigbench task names (needs `make bigbench`) or task.json paths",
    )
    qs.add_argument("--sigmas", default="0:2:0.1", help="start:stop:step or a list a,b,c (logit units)")
    qs.add_argument("--repeats", type=int, default=5, help="keyed sampling passes per σ")
    qs.add_argument("--seed", type=int, default=0, help="seed of the option shuffle and question sample")
    _out_option(qs)
    qs.set_defaults(run=_run_questions)

    coh = esub.add_parser("coherence", help="LLM greedy samples at each σ, scored by the clean model")
    _model_options(coh, default_model="smollm2-135m", data_help="unused", limit_help="unused")
    coh.add_argument("--sigmas", default="0,0.5,1,1.5,2", help="start:stop:step or a list a,b,c")
    coh.add_argument("--max-new-tokens", type=int, default=40, help="tokens generated per sample")
    _out_option(coh)
    coh.set_defaults(run=_run_coherence)

    cal = sub.add_parser(
        "calibrate", help="the σ reaching a target fidelity or accuracy; can edit tiers.yaml"
    )
    _model_options(
        cal,
        limit_help="calibration outputs (default 1000; 20000 pixels for segmentation)",
        model_required=False,
    )
    target = cal.add_mutually_exclusive_group()
    target.add_argument(
        "--target-fidelity", type=float, help="top-1 agreement with the full model, in (0, 1)"
    )
    target.add_argument("--target-accuracy", type=float, help="top-1 accuracy on labelled data, in (0, 1)")
    cal.add_argument("--tiers", default=None, help="a tiers.yaml to write the σ into (needs --tier)")
    cal.add_argument("--tier", default=None, help="the tier of --tiers that gets `sigma: <value>`")
    cal.add_argument("--verify-repeats", type=int, default=3, help="keyed passes measuring the result")
    cal.add_argument(
        "--from-traffic",
        metavar="URL",
        default=None,
        help="re-solve --tier's σ from what the service at URL recently served (admin API, AIM_ADMIN_TOKEN)",
    )
    cal.add_argument(
        "--apply",
        choices=("live", "file", "none"),
        default="none",
        help="--from-traffic: put the σ in force now (live), write it into the served tiers.yaml (file), "
        "or only report it (none, the default)",
    )
    cal.add_argument(
        "--max-tenant-share",
        type=float,
        default=None,
        help="--from-traffic: the largest share of the sample one tenant may hold (default 0.1)",
    )
    cal.set_defaults(run=_run_calibrate)
