"""Generation throughput: the modulated engine vs plain transformers ``generate``, same run, as ratios.

For each batch size B, the same B chat prompts go (a) through ``model.generate`` (greedy, left-padded,
one call) and (b) through `BuiltinEngine` as B concurrent requests with every row modulated (σ of
the ``standard`` tier, 1.0; the cost of modulation does not depend on the value of σ > 0) and, for
reference, unmodulated (σ = 0). Throughput = completion tokens (EOS included, tokens after it excluded)
/ wall seconds from the first submit to the last final event. Runs are interleaved (order alternating)
and repeated; figures are medians, plus the median of the ratios of adjacent runs.

On a shared CPU the model's forward time swings with other processes' load, which drowns a few percent
of difference in wall-clock ratios. So the time spent inside ``model.forward`` is also summed (the same
wrapper in both arms): the rest, per forward call, is each arm's own overhead (decoding loop,
modulation, sampling, detokenisation, event delivery). ``ratio_at_equal_forward`` is the throughput
ratio the two arms have when their forward passes cost the same (the median plain forward time).
Target: modulated engine >= 0.95x plain generate.

Run: ``python -m bench.generation [--model-dir DIR] [--threads N]``; writes bench/results/generation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import write
from service.modulation import RowSpec
from service.serving.generation import BuiltinEngine, GenerationRequest, collect, encode_chat

PROMPTS = (
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how airplanes stay in the air.",
    "Describe your ideal weekend in the mountains, hour by hour.",
    "Write a detailed guide to growing tomatoes at home.",
    "Tell me about the history of the printing press.",
    "Write a letter to a friend describing a trip to the sea.",
    "Explain how a computer stores numbers, step by step.",
    "Describe a busy market in a big city in the morning.",
)
FREE_SIGMA = 1.0
MAX_NEW = 32
ARMS = ("plain", "engine_free", "engine_premium")


class ForwardTimer:
    """Replaces ``model.forward`` with a timed call of the original (its signature kept, so ``generate``
    and the engine see the same arguments supported). Both arms go through it alike."""

    def __init__(self, model: Any) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._inner = model.forward
        functools.update_wrapper(self, self._inner)
        model.forward = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


def plain_generate(model: Any, ids: list[tuple[int, ...]], pad: int, eos: set[int]) -> tuple[int, float]:
    width = max(len(p) for p in ids)
    inputs = torch.tensor([[pad] * (width - len(p)) + list(p) for p in ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids])
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=inputs, attention_mask=mask, max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=pad
        )
    seconds = time.perf_counter() - t0
    tokens = 0
    for row in out[:, width:].tolist():
        ends = [i for i, t in enumerate(row) if t in eos]
        tokens += ends[0] + 1 if ends else len(row)
    return tokens, seconds


async def engine_generate(
    engine: BuiltinEngine, ids: list[tuple[int, ...]], sigma: float
) -> tuple[int, float]:
    t0 = time.perf_counter()
    streams = [
        await engine.submit(GenerationRequest(p, MAX_NEW, RowSpec(sigma, (i, 77)))) for i, p in enumerate(ids)
    ]
    done = await asyncio.gather(*(collect(s) for s in streams))
    return sum(d.usage.completion_tokens for d in done), time.perf_counter() - t0


async def measure(model: Any, tok: Any, timer: ForwardTimer, batch: int, repeats: int) -> dict[str, Any]:
    ids = [encode_chat(tok, [{"role": "user", "content": p}]) for p in PROMPTS[:batch]]
    eos = {model.generation_config.eos_token_id, tok.eos_token_id} - {None}
    pad = tok.pad_token_id if tok.pad_token_id is not None else min(eos)
    engine = BuiltinEngine(model, tok, device="cpu", max_batch_size=batch, max_wait_ms=50, max_queue=64)
    runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}

    async def one(arm: str) -> None:
        timer.reset()
        if arm == "plain":
            tokens, wall = plain_generate(model, ids, pad, eos)
        else:
            tokens, wall = await engine_generate(engine, ids, FREE_SIGMA if arm == "engine_free" else 0.0)
        runs[arm].append({"tokens": tokens, "wall_s": wall, "forward_s": timer.seconds, "calls": timer.calls})

    await engine.start()
    try:
        plain_generate(model, ids, pad, eos)  # warm-up
        await engine_generate(engine, ids, FREE_SIGMA)
        for i in range(repeats):
            # Alternating the order cancels slow drifts in machine load between the arms.
            for arm in ARMS if i % 2 == 0 else ARMS[::-1]:
                await one(arm)
    finally:
        await engine.stop()
    return summarise(batch, runs)


def summarise(batch: int, runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    med = statistics.median
    tps = {a: med(r["tokens"] / r["wall_s"] for r in runs[a]) for a in ARMS}
    over = {a: med((r["wall_s"] - r["forward_s"]) / r["calls"] for r in runs[a]) for a in ARMS}
    fwd = {a: med(r["forward_s"] / r["calls"] for r in runs[a]) for a in ARMS}
    paired = [
        (f["tokens"] / f["wall_s"]) / (p["tokens"] / p["wall_s"])
        for f, p in zip(runs["engine_free"], runs["plain"], strict=True)
    ]
    # Both arms make one forward call per generated token of the batch (plus the prefill).
    base = fwd["plain"]
    row = {
        "batch": batch,
        "max_new_tokens": MAX_NEW,
        "runs": runs,
        "tokens_per_s": tps,
        "forward_ms_per_call": {a: v * 1e3 for a, v in fwd.items()},
        "overhead_ms_per_call": {a: v * 1e3 for a, v in over.items()},
        "ratio_free_vs_plain": tps["engine_free"] / tps["plain"],
        "ratio_free_vs_plain_paired_median": med(paired),
        "ratio_premium_vs_plain": tps["engine_premium"] / tps["plain"],
        "ratio_free_vs_plain_at_equal_forward": (base + over["plain"]) / (base + over["engine_free"]),
    }
    print(
        f"B={batch}: tok/s plain {tps['plain']:.1f}, engine σ={FREE_SIGMA} {tps['engine_free']:.1f} "
        f"({row['ratio_free_vs_plain']:.3f}x, paired {row['ratio_free_vs_plain_paired_median']:.3f}x), "
        f"engine σ=0 {tps['engine_premium']:.1f} ({row['ratio_premium_vs_plain']:.3f}x) | forward "
        f"{base * 1e3:.1f} ms/call; overhead ms/call plain {over['plain'] * 1e3:.2f}, engine σ={FREE_SIGMA} "
        f"{over['engine_free'] * 1e3:.2f}, σ=0 {over['engine_premium'] * 1e3:.2f} -> "
        f"{row['ratio_free_vs_plain_at_equal_forward']:.3f}x at equal forward"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--model-dir", type=Path, help="a causal LM folder (default: the smollm2-135m preset)"
    )
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = args.model_dir
    if path is None:
        from service.presets import build_preset

        path = build_preset("smollm2-135m", Path(os.environ.get("AIM_STATE_DIR", ".aimserve")))
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    timer = ForwardTimer(model)
    rows = [asyncio.run(measure(model, tok, timer, int(b), args.repeats)) for b in args.batches.split(",")]
    payload = {
        "model": "SmolLM2-135M-Instruct (smollm2-135m preset)" if args.model_dir is None else str(path),
        "method": " ".join(__doc__.split("\n\n")[1:3]).replace("\n", " ") if __doc__ else "",
        "free_sigma": FREE_SIGMA,
        "torch_threads": torch.get_num_threads(),
        "load_average_1m_at_end": os.getloadavg()[0],
        "results": rows,
        "min_ratio_free_vs_plain": min(r["ratio_free_vs_plain"] for r in rows),
        "min_ratio_free_vs_plain_at_equal_forward": min(
            r["ratio_free_vs_plain_at_equal_forward"] for r in rows
        ),
    }
    name = "generation" if args.threads is None else f"generation-{args.threads}thread"
    print("wrote", write(name, payload))


if __name__ == "__main__":
    main()
