"""What a tier serves a text classifier: the evaluation's independent draws vs the service's semantic keys.

`aimserve eval utility` and `aimserve calibrate` give every input its own independent draw, so their accuracy
at σ is an expectation over draws. The service keys the noise on the model's head features
(`modulate_rows`, `service.modulation.semantic`): inputs the model represents alike share most of their draw.
When a model's features for unrelated inputs lie close together, all of its traffic shares a few draws, and
what one server secret serves can sit far from that expectation. Per model, on its held-out split:

- logit scale: percentiles of the top-1 minus top-2 logit gap;
- draw correlation between distinct held-out inputs (dot products of the rows' mixture weights);
- per σ (the test tiers' free σ 4.0 and the σ the shipped tiers.yaml's targets solve to on the model's
  calibration inputs): exact accuracy and fidelity with independent draws (`theory.top1_probability`), and
  what the service serves for each of ``--secrets`` server secrets (mean, sd, min, max over secrets), also on
  two subsets with the HTTP tests' secret (tests/live.py): the first 192 inputs (what the earlier
  tests/api/test_sentiment_ft_http.py sent: in file order, so skewed towards one class) and every
  ``--http-stride``-th input (what it sends now).

    python -m bench.served_tiers --out docs/figures/served-tiers-sentiment/summary.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench import common
from bench.voting import STATE, Forwarded, tier_sigma
from service.api.policy import row_spec
from service.models import LoadedModel, held_out, load_model
from service.modulation.keys import derive_projection_key
from service.modulation.semantic import feature_weights
from service.modulation.theory import top1_probability
from service.presets import build_preset
from service.serving.predict import modulate_rows
from tests.live import SECRET as HTTP_SECRET

TEST_TIERS_FREE_SIGMA = 4.0  # tests/api/conftest.py TIERS, tier "free"


def logit_scale(logits: torch.Tensor) -> dict[str, float]:
    top2 = logits.topk(2, dim=-1).values
    gap = top2[:, 0] - top2[:, 1]
    qs = torch.tensor([0.1, 0.5, 0.9])
    p10, p50, p90 = gap.quantile(qs).tolist()
    return {"gap_p10": round(p10, 3), "gap_median": round(p50, 3), "gap_p90": round(p90, 3)}


def draw_correlation(f: Forwarded, secret: bytes) -> dict[str, float]:
    w = feature_weights(f.features, derive_projection_key(secret), f.smooth)
    pairs = (w @ w.T)[~torch.eye(len(w), dtype=torch.bool)]
    return {"mean": round(pairs.mean().item(), 3), "p10": round(pairs.quantile(0.1).item(), 3)}


def served(
    f: Forwarded, rows: slice, labels: torch.Tensor, sigma: float, secret: bytes
) -> tuple[float, float]:
    """(accuracy, fidelity) of what a tier at ``sigma`` serves ``rows`` of ``f`` under ``secret``."""
    logits, features = f.logits[rows], f.features[rows]
    specs = [row_spec(secret, "free", sigma, None)] * len(logits)
    top1 = modulate_rows(logits, features, specs, derive_projection_key(secret), f.smooth).argmax(-1)
    return (top1 == labels[rows]).float().mean().item(), (top1 == logits.argmax(-1)).float().mean().item()


def _stats(values: Sequence[float]) -> dict[str, float]:
    t = torch.tensor(values)
    pairs = (("mean", t.mean()), ("sd", t.std()), ("min", t.min()), ("max", t.max()))
    return {k: round(v.item(), 4) for k, v in pairs}


def run_model(name: str, items: int, secrets: int, stride: int) -> dict[str, Any]:
    path = build_preset(name, STATE)
    model: LoadedModel = load_model(path)
    data = held_out(path)
    inputs = list(data.inputs)[:items]
    labels = torch.tensor(list(data.labels or [])[:items])
    f = Forwarded(model, inputs)
    clean = f.logits.argmax(-1)
    sigmas = {
        "test_tiers_free": TEST_TIERS_FREE_SIGMA,
        "tiers_yaml_standard": tier_sigma(model, "standard"),
        "tiers_yaml_free": tier_sigma(model, "free"),
    }
    subsets = {"first_192": slice(0, 192), f"every_{stride}th": slice(None, None, stride)}
    out: dict[str, Any] = {
        "inputs": len(inputs),
        "clean_accuracy": round((clean == labels).float().mean().item(), 4),
        "clean_accuracy_subsets": {
            k: round((clean[rows] == labels[rows]).float().mean().item(), 4) for k, rows in subsets.items()
        },
        "logit_scale": logit_scale(f.logits),
        "draw_correlation_distinct_inputs": draw_correlation(f, HTTP_SECRET.encode()),
        "sigmas": {},
    }
    for tier, sigma in sigmas.items():
        exact_acc = top1_probability(f.logits, labels, [sigma])[0].mean().item()
        exact_fid = top1_probability(f.logits, clean, [sigma])[0].mean().item()
        every = slice(None)
        runs = [served(f, every, labels, sigma, f"bench-secret-{s}".encode()) for s in range(secrets)]
        on_subsets = {k: served(f, rows, labels, sigma, HTTP_SECRET.encode()) for k, rows in subsets.items()}
        out["sigmas"][tier] = {
            "sigma": round(sigma, 4),
            "independent_draws_exact": {"accuracy": round(exact_acc, 4), "fidelity": round(exact_fid, 4)},
            "served_over_secrets": {
                "accuracy": _stats([a for a, _ in runs]),
                "fidelity": _stats([b for _, b in runs]),
            },
            "served_subsets_test_secret": {
                k: {"accuracy": round(a, 4), "fidelity": round(b, 4)} for k, (a, b) in on_subsets.items()
            },
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="minilm-sentiment,minilm-sentiment-ft")
    parser.add_argument("--items", type=int, default=1500, help="held-out inputs per model")
    parser.add_argument("--secrets", type=int, default=20, help="server secrets the served accuracy spans")
    parser.add_argument("--http-stride", type=int, default=4, help="every n-th row, as the HTTP test sends")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    models = {m: run_model(m, args.items, args.secrets, args.http_stride) for m in args.models.split(",")}
    result = {
        "command": "python -m bench.served_tiers " + " ".join(sys.argv[1:] if argv is None else argv),
        "secrets": args.secrets,
        "models": models,
        "seconds": round(time.perf_counter() - start, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    common.write_to(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
