"""Is modulated text still coherent? Greedy generations at each σ, scored by the clean model.

Each prompt is answered through the serving path (`run_generation`: the `BuiltinEngine`, greedy on the
modulated logits). Coherence figure: the clean (σ = 0) model's per-token perplexity of the completion,
``exp(mean -log p(token | prompt, earlier tokens))``, computed on the completion's text re-encoded by the
tokenizer (so a token split differently from decoding is scored as re-encoded). Greedy σ = 0 text is the
clean model's own choice at every step and so sets the floor; uniform random tokens would score about the
vocabulary size (49,152 for SmolLM2). ``eval coherence`` writes ``coherence.csv`` (one row per σ: mean
and median perplexity over the prompts, mean tokens), ``samples.txt`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from collections.abc import Sequence
from typing import Any

import torch

PROMPTS = (
    "Write two sentences about the ocean.",
    "Explain in a few sentences why the sky is blue.",
    "Give three tips for staying healthy.",
    "Describe your favourite season and why.",
    "What is a computer? Answer in two sentences.",
    "Tell a very short story about a cat.",
)


def clean_perplexity(loaded: Any, prompt: str, completion: str) -> float:
    """The clean model's per-token perplexity of ``completion`` after the chat-templated ``prompt``."""
    from service.serving.generation import encode_chat

    head = list(encode_chat(loaded.tokenizer, [{"role": "user", "content": prompt}]))
    tail = loaded.tokenizer.encode(completion, add_special_tokens=False)
    if not tail:
        return float("nan")
    ids = torch.tensor([head + tail], device=loaded.device)
    with torch.inference_mode():
        logp = loaded.model(ids).logits[0, len(head) - 1 : -1].float().log_softmax(-1).cpu()
    nll = -logp.gather(1, torch.tensor(tail)[:, None]).mean()
    return math.exp(float(nll))


def coherence_rows(loaded: Any, sigmas: Sequence[float], max_new: int) -> tuple[list[dict[str, Any]], str]:
    """(one row per σ, the samples as text)."""
    from service.evaluation.generate import Question, run_generation

    questions = [Question("sample", p, ("-",)) for p in PROMPTS]
    answers = run_generation(loaded, questions, sigmas, max_new_tokens=max_new)
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    for sigma in sigmas:
        group = [a for a in answers if a.sigma == sigma]
        ppl = [clean_perplexity(loaded, a.question.question, a.text) for a in group]
        scored = [p for p in ppl if math.isfinite(p)]
        rows.append({
            "sigma": sigma, "prompts": len(group),
            "perplexity_mean": statistics.fmean(scored) if scored else float("nan"),
            "perplexity_median": statistics.median(scored) if scored else float("nan"),
            "mean_tokens": statistics.fmean(a.tokens for a in group),
        })  # fmt: skip
        lines.append(f"===== σ = {sigma:g} =====")
        for a, p in zip(group, ppl, strict=True):
            lines.append(f"Q: {a.question.question}\n   [clean-model perplexity {p:.1f}] A: {a.text!r}")
    return rows, "\n".join(lines) + "\n"


def coherence_command(args: argparse.Namespace) -> int:
    from service.evaluation.commands import common
    from service.evaluation.forward import open_model, require_task
    from service.evaluation.report import write_csv, write_json
    from service.evaluation.spec import parse_grid
    from service.tasks import TEXT_GENERATION

    sigmas = parse_grid(args.sigmas, setting="--sigmas")
    if not 1 <= args.max_new_tokens <= 512:
        from service.errors import BadInput

        raise BadInput(f"--max-new-tokens must be between 1 and 512, got {args.max_new_tokens}")
    out = common(args)
    model = open_model(args.model, args.task)
    require_task(model, (TEXT_GENERATION,), "aimserve eval coherence")
    rows, text = coherence_rows(model, sigmas, args.max_new_tokens)
    write_csv(out / "coherence.csv", rows)
    (out / "samples.txt").write_text(text, encoding="utf-8")
    write_json(out / "summary.json", {"model": model.name, "prompts": list(PROMPTS), "rows": rows,
               "max_new_tokens": args.max_new_tokens, "vocabulary": int(model.num_classes),
               "load_average_1m": round(os.getloadavg()[0], 2)})  # fmt: skip
    for r in rows:
        print(f"σ = {float(r['sigma']):g}: clean-model perplexity median {float(r['perplexity_median']):.1f}")
    return 0
