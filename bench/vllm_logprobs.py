"""What the raw top-k logits per step cost vLLM: tokens/s and time to first token at k = 1, 20 and 128.

The gateway's vLLM engine reads, per decoding step, the top-k raw (pre-processor) logits from vLLM's
``logprobs`` (``--logprobs-mode raw_logits``): k = 1 gives live fidelity (the clean top-1); k =
``GENERATION_TOP`` (128) also gives the tier's traffic sample for re-solving σ, as the built-in engine keeps
it. vLLM returns k values for every step of a request (it has no per-step k), detokenizes each of them in
its API server process and sends them as JSON, so k is paid on every token.

One vLLM server, started exactly as the gateway's supervisor starts it (our processor, ``--max-logprobs
128``), asked directly with the gateway's own body (`completion_body`: a modulated row, σ = 1) and only
``logprobs`` varied; every request makes ``--max-tokens`` tokens (``ignore_eos``), at 1 and 8 concurrent
clients, arms interleaved per round so that a change of the machine's load hits every arm alike.

Run: ``python -m bench.vllm_logprobs [--max-tokens 64] [--rounds 3] [--port 18640]``; writes
bench/results/vllm_logprobs.json (the load average is recorded per arm).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bench.common import write
from bench.vllm import PROMPTS, _stop, wait_ready
from bench.vllm_arms import MODEL, Build, arm, direct
from service.serving.generation.vllm.config import VllmSettings
from service.serving.generation.vllm.supervisor import VllmChild
from service.serving.traffic import GENERATION_TOP

TOPS = (1, 20, GENERATION_TOP)
CLIENTS = (1, 8)


def with_top(build: Build, k: int) -> Build:
    def built(i: int, n: int) -> tuple[str, dict[str, Any], dict[str, str]]:
        path, body, headers = build(i, n)
        return path, {**body, "logprobs": k}, headers

    return built


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--port", type=int, default=18640)
    p.add_argument("--state", default=os.environ.get("AIM_STATE_DIR", ".aimserve"))
    args = p.parse_args(argv)
    from transformers import AutoTokenizer

    from service.presets import build_preset
    from service.serving.generation import encode_prompt

    folder = build_preset(MODEL, Path(args.state).resolve())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt_ids = [encode_prompt(tokenizer, text) for text in PROMPTS]
    n = args.max_tokens
    settings = dataclasses.replace(VllmSettings.from_env(), port=args.port)
    child = VllmChild(folder, MODEL, settings, max_num_seqs=16)
    cmd = child.command(args.port)
    proc = subprocess.Popen(cmd, env=child.environment(), start_new_session=True)
    url = f"http://127.0.0.1:{args.port}"
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        wait_ready(url, "/health")
        base = direct(prompt_ids, [n] * len(PROMPTS), sigma=1.0)
        for _ in range(args.rounds):
            for c in CLIENTS:
                for k in TOPS:
                    got = arm(url, with_top(base, k), c, 1, n, len(PROMPTS))
                    results.setdefault(f"top{k}_c{c}", []).append(got)
    finally:
        _stop(proc)
    arms = {name: _merge(runs) for name, runs in results.items()}
    ratios = {
        f"c{c}": {
            f"top{k}_over_top1": arms[f"top{k}_c{c}"]["tokens_per_s"] / arms[f"top1_c{c}"]["tokens_per_s"]
            for k in TOPS[1:]
        }
        for c in CLIENTS
    }
    path = write(
        "vllm_logprobs",
        {"method": __doc__, "command": cmd, "settings": {"max_tokens": n, "rounds": args.rounds}}
        | {"arms": arms, "ratios": ratios},
    )
    print(json.dumps(ratios, indent=2), f"\nwritten to {path}")


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One arm over its rounds: total tokens over total seconds, the median round's time to first token."""
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in runs)
    tokens = sum(r["tokens"] for r in runs)
    ttft = sorted(r["ttft_median_s"] for r in runs)[len(runs) // 2]
    loads = [x for r in runs for x in r["load_1m"]]
    return {"tokens_per_s": tokens / seconds, "ttft_median_s": ttft, "tokens": tokens, "load_1m": loads}


if __name__ == "__main__":
    main()
