"""Markdown tables of the voting benchmark's results (bench/README.md, docs/security.md), in points.

    python -m bench.voting_report bench/results/voting-sentiment-200.json [...]
    python -m bench.voting_report --llm bench/results/voting-llm-*.json   (one table, shares pooled)

Per kind: the free tier's single shot, its paired gain at the largest k (± one standard error, each
rule), premium's gain under the same attack (the test-time-augmentation baseline), the excess (free gain
- premium gain, paired) and the gap to premium before and after both vote; ``max gain`` is the old
figure (best vote over every k and rule minus single-shot), which the target of +2 points is stated on.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pts(x: float, se: float | None = None, sign: bool = True) -> str:
    body = f"{100 * x:+.1f}" if sign else f"{100 * x:.1f}"
    return body if se is None else f"{body} ± {100 * se:.1f}"


def _header(name: str, model: dict[str, Any], payload: dict[str, Any]) -> str:
    before = ", ".join(f"{x:.1f}" for x in payload["load_before"])
    after = ", ".join(f"{x:.1f}" for x in payload["load_after"])
    clean = model.get("premium_accuracy")
    extra = f", premium accuracy {clean:.3f}" if clean is not None else f", {model['tokens']} tokens"
    return (
        f"**{name}** ({model['items']} items, free σ = {model['sigma_free']:.3f}{extra}; load average before "
        f"{before}, after {after}; wall {payload['wall_s']:.0f} s)"
    )


def classifier_table(model: dict[str, Any], k: int) -> list[str]:
    maj, mlp = f"majority_{k}", f"mean_logprob_{k}"
    rows = [
        f"| kind | free single | free gain k={k}: majority | mean log-prob | premium gain k={k}: majority "
        "| mean log-prob | excess (free - premium), mean log-prob | gap to premium: single -> both voted "
        "| max gain (target <= +2) | digest (before #11): max gain |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, votes in model["vs_premium"].items():
        free, m, v = model["semantic"][kind], votes[maj], votes[mlp]
        over = " **over**" if free["max_gain"] > 0.02 + 1e-9 else ""
        digest = _pts(model["digest"][kind]["max_gain"]) if kind in model.get("digest", {}) else "-"
        rows.append(
            f"| {kind} | {_pts(free['single'], sign=False)} | {_pts(m['free_gain'], m['free_se'])} "
            f"| {_pts(v['free_gain'], v['free_se'])} | {_pts(m['premium_gain'], m['premium_se'])} "
            f"| {_pts(v['premium_gain'], v['premium_se'])} | {_pts(v['excess'], v['excess_se'])} "
            f"| {_pts(v['gap_single'], sign=False)} -> {_pts(v['gap_voted'], sign=False)} "
            f"| {_pts(free['max_gain'])}{over} | {digest} |"
        )
    return rows


def llm_table(model: dict[str, Any], ks: Sequence[int]) -> list[str]:
    k = max(ks)
    gains = " | ".join(f"free gain k={j}" for j in ks)
    rows = [
        f"| kind | free single | {gains} | premium's vote k={k} vs its single shot | excess k={k} "
        f"| free vs premium, both voting k={k} (change vs single shots) |",
        "| --- | --- | " + "--- | " * len(ks) + "--- | --- | --- |",
    ]
    for kind, free in model["semantic"].items():
        cells = " | ".join(_pts(g["gain"], g["se"]) for g in (free["gains"][f"vote_{j}"] for j in ks))
        if kind in model.get("vs_premium", {}):
            v, same = model["vs_premium"][kind][f"vote_{k}"], model["same_attack"][kind][f"vote_{k}"]
            base = f"{_pts(v['premium_gain'], v['premium_se'])} | {_pts(v['excess'], v['excess_se'])} "
            base += f"| {_pts(same['gain'], same['se'])}"
        else:
            base = "not run | - | -"
        rows.append(f"| {kind} | {_pts(free['single'], sign=False)} | {cells} | {base} |")
    return rows


def _pool(parts: Sequence[tuple[int, Any]], key: str = "") -> Any:
    """Figures of disjoint shares of items, pooled: an items-weighted mean, and for a standard error (a key
    ending in "se") sqrt(sum (n_i se_i)^2) / N, the shares being independent; intervals recomputed."""
    first, total = parts[0][1], sum(n for n, _ in parts)
    if isinstance(first, dict):
        out = {k: _pool([(n, v[k]) for n, v in parts], k) for k in first if not k.startswith("ci95")}
        if "ci95_low" in first:
            out["ci95_low"], out["ci95_high"] = out["gain"] - 1.96 * out["se"], out["gain"] + 1.96 * out["se"]
        return out
    if key.endswith("se"):
        return math.sqrt(sum((n * v) ** 2 for n, v in parts)) / total
    return sum(n * v for n, v in parts) / total


def pooled(models: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One LLM result from disjoint shares of prompts (``--llm-offset``) of the same kinds and keyings."""
    keys: list[str] = [k for k in ("semantic", "vs_premium", "same_attack") if k in models[0]]
    out = {k: _pool([(m["items"], m[k]) for m in models]) for k in keys}
    return {**models[0], **out, "items": sum(m["items"] for m in models)}


def report(path: Path) -> str:
    payload = json.loads(path.read_text())
    out = [f"`{path.name}`:", ""]
    for name, model in payload["models"].items():
        out += [_header(name, model, payload), ""]
        if "premium_accuracy" in model:
            out += classifier_table(model, max(payload["ks"]))
        else:
            first = next(iter(model["semantic"].values()))
            ks = sorted(int(key.split("_")[1]) for key in first["gains"])
            out += llm_table(model, ks)
        corr = ", ".join(f"{k} {v:.3f}" for k, v in model.get("draw_correlation", {}).items())
        out += ["", f"Draw correlation: {corr}.", ""]
    return "\n".join(out)


def llm_report(paths: Sequence[Path]) -> str:
    """One LLM table over files of one kind each (``--llm-kinds``): shares of one kind are pooled."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        model = json.loads(path.read_text())["models"]["smollm2-135m"]
        by_kind.setdefault(next(iter(model["semantic"])), []).append(model)
    rows: list[str] = []
    for kind, models in by_kind.items():
        model = pooled(models)
        ks = sorted(int(key.split("_")[1]) for key in model["semantic"][kind]["gains"])
        table = llm_table(model, ks)
        rows += [*table[: 2 if not rows else 0], f"{table[2]} {model['items']} |"]
    rows[0] += " prompts |"
    rows[1] += " --- |"
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    if args[:1] == ["--llm"]:
        print(llm_report([Path(a) for a in args[1:]]))
        return 0
    for name in args:
        print(report(Path(name)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
