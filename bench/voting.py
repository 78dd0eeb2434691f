"""Voting attacks on the free tier: does voting over meaning-preserving variants recover the full model?

For each classifier preset and each kind of variant (bench/variants.py), at the shipped free tier
(tiers.yaml, σ solved on the model's calibration inputs exactly as the service does): accuracy of the
single-shot answer vs a majority vote and a mean-log-probability vote over k variants (the original plus
k - 1 variants), against premium (the clean model). The rows go through the service's own modulation
(`modulate_rows`, what `classify_batch` serves) and key function (`row_spec`); ``keying="digest"`` reruns
the attack against the keying before issue #11 (HMAC of tenant and input bytes) to show the bench has teeth.
``second_account``: k accounts of the free tier asking the same input (the tenant is not in the key, so
they get the same draw). The cost of the keying is measured beside it.

    python -m bench.voting [--items 200] [--ks 3,9,31] [--models minilm-sentiment,digits,smollm2-135m]

Writes bench/results/voting.json, with the machine's load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench import common, variants, voting_stats
from service.api.components import fidelity_solver
from service.api.policy import row_spec
from service.models import LoadedModel, held_out, load_model
from service.modulation import ModulationBatch, RowSpec, derive_row_key, modulate
from service.modulation.keys import derive_projection_key
from service.presets import build_preset
from service.serving.predict import modulate_rows
from service.tasks.classes import smoothness_for
from service.tiers import TierRegistry

SECRET = b"bench-voting-secret-0123456789"
REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("AIM_STATE_DIR", REPO / ".aimserve"))


def tier_sigma(
    model: LoadedModel, tier: str = "free", tiers: Path = REPO / "tiers.yaml", secret: bytes = SECRET
) -> float:
    """The σ a service with ``secret`` gives ``tier`` of ``tiers`` on ``model`` (a target_fidelity solved as
    it does: on the draws that secret serves, for a classifier)."""
    registry = TierRegistry(tiers, fidelity_solver(model, secret))
    registry.reload_or_raise()
    return registry.tier_for(tier).sigma


class Forwarded:
    """Clean logits and head features of every input, computed once (batches of 32) and shared by the
    keyings and accounts of one run: the attack's cost is in the forward passes, not in the modulation."""

    def __init__(self, model: LoadedModel, inputs: Sequence[Any]) -> None:
        self.items = [model.prepare(x) for x in inputs]
        # inputs the model sees alike (a homoglyph variant is its original's token ids) run once
        first = {item.digest: i for i, item in reversed(list(enumerate(self.items)))}
        unique = sorted(first.values())
        row = {i: j for j, i in enumerate(unique)}
        at = torch.tensor([row[first[item.digest]] for item in self.items])
        run = [self.items[i] for i in unique]
        outs = [model.forward_features(run[i : i + 32]) for i in range(0, len(run), 32)]
        self.logits = torch.cat([o[0] for o in outs])[at]
        self.features = torch.cat([o[1] for o in outs])[at]
        self.smooth = smoothness_for(model.kind)


def log_probs(f: Forwarded, sigma: float, keying: str, tenant: str) -> torch.Tensor:
    """(N, C) log-probabilities a tenant receives (all classes, as with top_k = C); ``keying="premium"``:
    the clean model's (σ = 0), the baseline a vote is judged against."""
    if keying == "premium":
        return f.logits.log_softmax(-1)
    if keying == "semantic":  # the service's own path: `row_spec` + `modulate_rows`
        specs = [row_spec(SECRET, "free", sigma, None)] * len(f.items)
        modulated = modulate_rows(f.logits, f.features, specs, derive_projection_key(SECRET), f.smooth)
    else:  # the keying before #11: one independent draw per (tenant, input bytes)
        specs = [RowSpec(sigma, derive_row_key(SECRET, tenant, item.digest)) for item in f.items]
        modulated = modulate(f.logits, ModulationBatch.build(specs, f.logits.shape[1]))
    return modulated.log_softmax(-1)


def votes(lp: torch.Tensor, ks: Sequence[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """lp (N, K, C) -> per k: (majority top-1, mean-log-prob top-1) over the first k answers, (N,) each."""
    out = {}
    for k in ks:
        top = lp[:, :k].argmax(-1)
        counts = torch.nn.functional.one_hot(top, lp.shape[-1]).sum(1).float()
        counts += 1e-3 * lp[:, :k].mean(1).softmax(-1)  # ties broken by the mean vote
        out[k] = (counts.argmax(-1), lp[:, :k].mean(1).argmax(-1))
    return out


def attack(
    model: LoadedModel,
    inputs: Sequence[Any],
    labels: torch.Tensor,
    make: Callable[[Any, int], list[Any]] | None,
    sigma: float,
    ks: Sequence[int],
    keyings: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """One kind of variant: per keying, accuracies single-shot and voted for k in ``ks`` (`voting_stats.
    summary`) with each vote's paired gain and standard error (``gains``); with ``semantic`` and
    ``premium`` among the keyings, ``vs_premium``: the free gain beside premium's (`versus_premium`)."""
    kmax = max(ks)
    if make is None:  # second account: the same inputs from kmax accounts
        f = Forwarded(model, inputs)
    else:
        f = Forwarded(model, [x for item in inputs for x in [item, *make(item, kmax - 1)]])
    out: dict[str, dict[str, Any]] = {}
    scores = {}
    for keying in keyings:
        if make is None:
            lp = torch.stack([log_probs(f, sigma, keying, f"tenant-{a}") for a in range(kmax)], dim=1)
        else:
            lp = log_probs(f, sigma, keying, "tenant-0").view(len(inputs), kmax, -1)
        correct = {"single": (lp[:, 0].argmax(-1) == labels).float()}
        for k, (maj, mean) in votes(lp, ks).items():
            correct[f"majority_{k}"] = (maj == labels).float()
            correct[f"mean_logprob_{k}"] = (mean == labels).float()
        scores[keying] = correct
        out[keying] = {**voting_stats.summary(correct), "gains": voting_stats.gains(correct)}
    if "semantic" in scores and "premium" in scores:
        out["vs_premium"] = voting_stats.versus_premium(scores["semantic"], scores["premium"])
    return out


def _pngs(images: np.ndarray) -> list[bytes]:
    out = []
    for a in images:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def run_classifier(
    name: str,
    items: int,
    ks: Sequence[int],
    keyings: Sequence[str],
    per: int = 8,
    cost: bool = True,
    kinds: Sequence[str] | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """One classifier preset: per kind and keying, `attack`; the draw correlations with ``per`` variants of
    each input; with ``cost``, the keying's share of a batch (`keying_cost`)."""
    build_preset(name, STATE)
    model = load_model(STATE / "presets" / name)
    data = held_out(STATE / "presets" / name)
    assert data.labels is not None
    chosen = slice(offset, offset + items)  # held-out items offset.. (a split run's share)
    labels = torch.tensor(data.labels[chosen])
    if data.kind == "text":
        inputs: list[Any] = list(data.inputs[chosen])
        make: dict[str, Any] = dict(variants.TEXT_KINDS)
    else:
        assert data.images is not None
        arrays = list(data.images[chosen])
        inputs = _pngs(np.stack(arrays))
        by_png = dict(zip(inputs, arrays, strict=True))
        make = {
            k: (lambda fn: lambda png, n: fn(by_png[png], n))(fn) for k, fn in variants.IMAGE_KINDS.items()
        }
    make["second_account"] = None
    if kinds is not None:  # a subset, e.g. to split a long run over processes
        make = {kind: fn for kind, fn in make.items() if kind in kinds}
    sigma = tier_sigma(model)
    premium = (Forwarded(model, inputs).logits.argmax(-1) == labels).float().mean().item()
    result: dict[str, Any] = {"sigma_free": sigma, "items": len(inputs), "premium_accuracy": premium}
    by_kind = {kind: attack(model, inputs, labels, fn, sigma, ks, keyings) for kind, fn in make.items()}
    for keying in [*keyings, "vs_premium"]:
        result[keying] = {kind: rows[keying] for kind, rows in by_kind.items() if keying in rows}
    from bench.voting_cost import draw_correlations, keying_cost  # it imports this module

    result["draw_correlation"] = draw_correlations(model, inputs, make, per)
    if cost:
        result["keying_cost"] = keying_cost(model, inputs, sigma)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--ks", default="3,9,31")
    parser.add_argument("--models", default="minilm-sentiment,digits,smollm2-135m")
    parser.add_argument("--keyings", default="semantic,premium,digest")
    parser.add_argument("--per", type=int, default=8, help="variants per input for the draw correlations")
    parser.add_argument("--kinds", default=None, help="comma-separated kinds of variant (default: all)")
    parser.add_argument("--offset", type=int, default=0, help="first held-out item (to split a run)")
    parser.add_argument("--llm-offset", type=int, default=0, help="first held-out prompt (to split a run)")
    parser.add_argument("--llm-items", type=int, default=8)
    parser.add_argument("--llm-ks", default="3,9,31")
    parser.add_argument("--llm-kinds", default=None, help="comma-separated LLM kinds (default: all)")
    parser.add_argument("--out", default="voting")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    keyings = args.keyings.split(",")
    started = time.time()
    payload: dict[str, Any] = {"load_before": os.getloadavg(), "ks": ks, "models": {}}
    for name in args.models.split(","):
        if name == "smollm2-135m":
            from bench.voting_llm import KINDS, run_llm

            llm_ks = [int(k) for k in args.llm_ks.split(",")]
            llm_kinds = args.llm_kinds.split(",") if args.llm_kinds else KINDS
            payload["models"][name] = run_llm(
                STATE, args.llm_items, llm_ks, keyings, SECRET, llm_kinds, offset=args.llm_offset
            )
        else:
            kinds = args.kinds.split(",") if args.kinds else None
            payload["models"][name] = run_classifier(
                name, args.items, ks, keyings, args.per, kinds=kinds, offset=args.offset
            )
        print(name, "done", flush=True)
    payload["load_after"] = os.getloadavg()
    payload["wall_s"] = time.time() - started
    print(common.write(args.out, payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
