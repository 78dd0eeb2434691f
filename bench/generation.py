"""Generation throughput: the modulated engine vs plain transformers ``generate``, same run, as ratios.

For each batch size B, the same B chat prompts go (a) through ``model.generate`` (greedy, left-padded,
one call) and (b) through `GenerationEngine` as B concurrent requests with every row modulated (σ of
the ``standard`` tier, 1.0) and, for reference, unmodulated (σ = 0). Throughput = completion tokens
(EOS included, tokens after it excluded) / wall seconds from submit to the last final event. Runs are
interleaved (order alternating) and repeated; figures are medians, and the median of the per-repeat
ratios of adjacent runs. Target: modulated engine >= 0.95x plain generate.

Run: ``python -m bench.generation [--model-dir DIR]``; writes bench/results/generation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import write
from service.serving.generation import GenerationEngine, GenerationRequest, collect, encode_chat

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
    engine: GenerationEngine, ids: list[tuple[int, ...]], sigma: float
) -> tuple[int, float]:
    t0 = time.perf_counter()
    streams = [
        await engine.submit(GenerationRequest(p, MAX_NEW, key=(i, 77), sigma=sigma))
        for i, p in enumerate(ids)
    ]
    done = await asyncio.gather(*(collect(s) for s in streams))
    return sum(d.usage.completion_tokens for d in done), time.perf_counter() - t0


async def measure(model: Any, tok: Any, batch: int, repeats: int) -> dict[str, Any]:
    ids = [encode_chat(tok, [{"role": "user", "content": p}]) for p in PROMPTS[:batch]]
    eos = {model.generation_config.eos_token_id, tok.eos_token_id} - {None}
    pad = tok.pad_token_id if tok.pad_token_id is not None else min(eos)
    engine = GenerationEngine(model, tok, device="cpu", max_batch_size=batch, max_wait_ms=50, max_queue=64)
    await engine.start()
    runs: dict[str, list[tuple[int, float]]] = {"plain": [], "engine_free": [], "engine_premium": []}
    try:
        plain_generate(model, ids, pad, eos)  # warm-up
        await engine_generate(engine, ids, FREE_SIGMA)
        for i in range(repeats):
            # Alternating the order cancels slow drifts in machine load between the two.
            if i % 2:
                runs["engine_free"].append(await engine_generate(engine, ids, FREE_SIGMA))
                runs["plain"].append(plain_generate(model, ids, pad, eos))
            else:
                runs["plain"].append(plain_generate(model, ids, pad, eos))
                runs["engine_free"].append(await engine_generate(engine, ids, FREE_SIGMA))
            runs["engine_premium"].append(await engine_generate(engine, ids, 0.0))
    finally:
        await engine.stop()
    rates = {k: [t / s for t, s in v] for k, v in runs.items()}
    tps = {k: statistics.median(v) for k, v in rates.items()}
    paired = [f / p for f, p in zip(rates["engine_free"], rates["plain"], strict=True)]
    row = {
        "batch": batch,
        "max_new_tokens": MAX_NEW,
        "tokens": {k: [t for t, _ in v] for k, v in runs.items()},
        "tokens_per_s_runs": rates,
        "tokens_per_s": tps,
        "ratio_free_vs_plain": tps["engine_free"] / tps["plain"],
        "ratio_free_vs_plain_paired_median": statistics.median(paired),
        "ratio_premium_vs_plain": tps["engine_premium"] / tps["plain"],
    }
    print(
        f"B={batch}: plain {tps['plain']:.1f} tok/s, engine σ={FREE_SIGMA} {tps['engine_free']:.1f} tok/s "
        f"({row['ratio_free_vs_plain']:.3f}x), engine σ=0 {tps['engine_premium']:.1f} tok/s "
        f"({row['ratio_premium_vs_plain']:.3f}x)"
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
    rows = [asyncio.run(measure(model, tok, int(b), args.repeats)) for b in args.batches.split(",")]
    payload = {
        "model": "SmolLM2-135M-Instruct (smollm2-135m preset)" if args.model_dir is None else str(path),
        "method": __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else "",
        "free_sigma": FREE_SIGMA,
        "torch_threads": torch.get_num_threads(),
        "load_average_1m_at_end": os.getloadavg()[0],
        "results": rows,
        "min_ratio_free_vs_plain": min(r["ratio_free_vs_plain"] for r in rows),
    }
    name = "generation" if args.threads is None else f"generation-{args.threads}thread"
    print("wrote", write(name, payload))


if __name__ == "__main__":
    main()
