"""``aimserve calibrate``: the σ giving a target fidelity or accuracy, measured, optionally written to a tier.

The σ is solved on the exact curve (`service.modulation.calibration`) over the model's calibration logits:
by default the held-out split saved beside the model (``calibration_logits``), or ``--data``. It is then
checked by keyed sampling through the serving path's `modulate` (``--verify-repeats`` passes), and the
measured value is printed beside the target (and written into the tier's comment).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch

from service.errors import BadInput
from service.evaluation.metrics import predictions
from service.evaluation.sampling import modulated_outcome, repeat_keys
from service.evaluation.spec import check_fraction, check_positive
from service.modulation import RowKey, RowSpec
from service.tasks import SEMANTIC_SEGMENTATION
from service.tiers.tierfile import check_tier, write_tier_sigma

DEFAULT_OUTPUTS = {SEMANTIC_SEGMENTATION.name: 20_000}


def measure(
    logits: torch.Tensor, labels: torch.Tensor | None, sigma: float, repeats: int
) -> tuple[float, float | None]:
    """(fidelity, accuracy or None) of keyed modulation at ``sigma``, means over ``repeats`` passes."""
    clean = predictions(logits)
    truth = labels if labels is not None else clean
    fidelity: list[float] = []
    acc: list[float] = []
    for r in range(repeats):

        def row(key: RowKey) -> RowSpec:
            return RowSpec(sigma=sigma, key=key)

        keys = repeat_keys(len(logits), r)
        outcome = modulated_outcome(logits, truth, clean, keys, row, with_confusion=False)
        fidelity.append(outcome.fidelity)
        acc.append(outcome.accuracy)
    return statistics.fmean(fidelity), statistics.fmean(acc) if labels is not None else None


def _settings(args: argparse.Namespace) -> tuple[str, float]:
    if args.model is None:
        raise BadInput("--model is required (or --from-traffic URL to re-solve a served tier's σ)")
    if args.target_fidelity is None and args.target_accuracy is None:
        raise BadInput("give --target-fidelity or --target-accuracy")
    metric = "fidelity" if args.target_fidelity is not None else "accuracy"
    value = args.target_fidelity if metric == "fidelity" else args.target_accuracy
    check_fraction(value, setting=f"--target-{metric}")
    check_positive(args.verify_repeats, setting="--verify-repeats")
    check_positive(args.threads, setting="--threads")
    check_positive(args.batch_size, setting="--batch-size")
    if args.limit is not None:
        check_positive(args.limit, setting="--limit")
    if (args.tiers is None) != (args.tier is None):
        raise BadInput("--tiers and --tier go together: give both to write the σ into a tier, or neither")
    if args.tiers is not None:
        check_tier(Path(args.tiers), args.tier)
    return metric, float(value)


def _logits(model: Any, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, C) calibration logits and labels (None for generation without labels)."""
    from service.models import calibration_logits

    limit = args.limit or DEFAULT_OUTPUTS.get(model.task, 1000)
    if args.data is None:
        return calibration_logits(model, limit)
    from service.evaluation.commands import CLASSIFY
    from service.evaluation.datasets import load_eval_set
    from service.evaluation.forward import compute_logits, require_task
    from service.evaluation.utility import scored_pixels

    require_task(model, CLASSIFY, "--data")
    segmentation = model.kind is SEMANTIC_SEGMENTATION
    data = load_eval_set(model, args.data, None if segmentation else limit)
    logits = compute_logits(model, data.inputs, batch_size=args.batch_size)
    z, y = scored_pixels(logits, data.labels)
    if len(y) > limit:  # pixels: a uniform subset, as calibration_logits draws them
        pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:limit]
        z, y = z[pick], y[pick]
    return z, y


def calibrate_command(args: argparse.Namespace) -> int:
    """Print the σ (and what it achieves); with ``--tiers/--tier`` write it into that tier."""
    from service.evaluation.forward import open_model
    from service.modulation.calibration import sigma_for_accuracy, sigma_for_fidelity

    metric, target = _settings(args)
    torch.set_num_threads(args.threads)
    model = open_model(args.model, args.task)
    logits, labels = _logits(model, args)
    if metric == "accuracy" and labels is None:
        raise BadInput("--target-accuracy needs labelled data; this model's calibration set has no labels")
    try:
        if metric == "fidelity":
            result = sigma_for_fidelity(logits, target)
        else:
            assert labels is not None
            result = sigma_for_accuracy(logits, labels, target)
    except ValueError as exc:
        raise BadInput(f"--target-{metric} {target:g}: {exc}") from None
    fid, acc = measure(logits, labels, result.sigma, args.verify_repeats)
    measured = fid if metric == "fidelity" else acc
    print(f"sigma: {result.sigma:.4f}")
    other = f"; fidelity {fid:.4f}" if metric == "accuracy" else ""
    other = f"; accuracy {acc:.4f}" if metric == "fidelity" and acc is not None else other
    print(
        f"{model.name}: target {metric} {target:g}, exact {result.achieved:.4f}, measured {measured:.4f} "
        f"({args.verify_repeats} keyed passes over {len(logits)} outputs, {logits.shape[1]} classes){other}"
    )
    if args.tiers is not None:
        note = f"calibrated: target_{metric} {target:g} on {model.name}, measured {measured:.3f}"
        write_tier_sigma(Path(args.tiers), args.tier, result.sigma, note)
        print(f"wrote sigma {result.sigma:.4f} into tier {args.tier!r} of {args.tiers}")
    return 0
