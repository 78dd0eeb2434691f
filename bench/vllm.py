"""Text generation on vLLM vs vLLM alone vs the built-in engine: tokens/s and time to first token, one run.

Three arms, same prompts, greedy, streamed over HTTP (the gateway's /v1/generate; vLLM's completions
route), at 1 and 16 concurrent clients:
- gateway+vllm: `aimserve serve --engine vllm` (its supervised vLLM child), a free tenant whose every row
  is modulated (σ > 0) by our logits processor, behind auth, rate limit, keys and metrics;
- vllm alone: the same vLLM server asked directly, no ``vllm_xargs`` (the processor is loaded but has no
  row to touch: it returns at once), no gateway;
- gateway+builtin: `aimserve serve --engine builtin` with the same tenant tier.
Targets: gateway+vllm >= 0.90x vllm alone; >= 2x gateway+builtin on a CPU.

Run: ``python -m bench.vllm [--max-tokens 48] [--rounds 2]``; writes bench/results/vllm.json with the
machine's load average (figures measured on a shared, loaded machine are lower bounds of each arm, and
the ratios are what to read).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import write

MODEL = "smollm2-135m"
ADMIN = "bench-admin-token-0123456789"
SECRET = "bench-secret-0123456789abcdef"
METRICS = "bench-metrics-token-0123456789"
VLLM_PORT = 18611
TIERS = "default_tier: free\ntiers:\n  free:\n    sigma: 1.0\n    rate_limit: {requests_per_minute: 100000}\n"
PROMPTS = [
    "Explain gravity in two sentences.",
    "Write a short story about a dragon who learns to cook.",
    "What should I pack for a weekend of hiking in the mountains?",
    "List five uses of a paper clip.",
]


def serve(engine: str, port: int, state: Path, tiers: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AIM_STATE_DIR": str(state), "AIM_ADMIN_TOKEN": ADMIN, "AIM_SECRET": SECRET}
    env.update(AIM_METRICS_TOKEN=METRICS, AIM_MAX_BATCH_SIZE="16", AIM_ENGINE=engine)
    env.update(AIM_VLLM_PORT=str(VLLM_PORT))
    cmd = [sys.executable, "-m", "service.cli", "serve", "--model", MODEL, "--tiers", str(tiers)]
    cmd += ["--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def wait_ready(url: str, timeout_s: float = 1200.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"{url} did not become ready")


def tenant(url: str) -> str:
    r = httpx.post(f"{url}/admin/tenants", json={"name": "bench", "tier": "free"}, headers=_auth(ADMIN))
    r.raise_for_status()
    return str(r.json()["api_key"])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def one(c: httpx.AsyncClient, url: str, key: str | None, prompt: str, n: int) -> tuple[int, float]:
    """(completion tokens, seconds to the first text) of one streamed greedy completion: the gateway's
    native /v1/generate (its last frame carries the usage), or vLLM's own completions route."""
    if key is None:
        path = "/v1/completions"
        body: dict[str, Any] = {"model": MODEL, "prompt": prompt, "max_tokens": n, "temperature": 0}
        body["stream_options"] = {"include_usage": True}
    else:
        path, body = "/v1/generate", {"prompt": prompt, "max_new_tokens": n}
    body["stream"] = True
    start, first, tokens = time.perf_counter(), None, 0
    async with c.stream("POST", url + path, json=body, headers=_auth(key) if key else {}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            texts = [ch.get("text") for ch in chunk.get("choices", [])] + [chunk.get("text")]
            if first is None and any(texts):
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    return tokens, first if first is not None else time.perf_counter() - start


async def arm(url: str, key: str | None, clients: int, rounds: int, n: int) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=600) as c:
        await one(c, url, key, PROMPTS[0], 4)  # warm-up
        ttfts: list[float] = []
        tokens = 0
        start = time.perf_counter()
        for r in range(rounds):
            jobs = [one(c, url, key, PROMPTS[(r + i) % len(PROMPTS)], n) for i in range(clients)]
            for t, first in await asyncio.gather(*jobs):
                tokens += t
                ttfts.append(first)
        wall = time.perf_counter() - start
    return {"tokens_per_s": tokens / wall, "ttft_median_s": statistics.median(ttfts), "tokens": tokens}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--state", default=os.environ.get("AIM_STATE_DIR", ".aimserve"))
    args = p.parse_args(argv)
    state = Path(args.state).resolve()
    tiers = state / "bench-vllm-tiers.yaml"
    tiers.parent.mkdir(parents=True, exist_ok=True)
    tiers.write_text(TIERS)
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    gw_vllm = serve("vllm", 18601, state, tiers)
    try:
        url = "http://127.0.0.1:18601"
        wait_ready(url)
        key = tenant(url)
        vllm_url = f"http://127.0.0.1:{VLLM_PORT}"
        for clients in (1, 16):
            results[f"gateway_vllm_c{clients}"] = asyncio.run(
                arm(url, key, clients, args.rounds, args.max_tokens)
            )
            results[f"vllm_alone_c{clients}"] = asyncio.run(
                arm(vllm_url, None, clients, args.rounds, args.max_tokens)
            )
    finally:
        _stop(gw_vllm)
    gw_builtin = serve("builtin", 18602, state, tiers)
    try:
        url = "http://127.0.0.1:18602"
        wait_ready(url)
        key = tenant(url)
        for clients in (1, 16):
            results[f"gateway_builtin_c{clients}"] = asyncio.run(
                arm(url, key, clients, args.rounds, args.max_tokens)
            )
    finally:
        _stop(gw_builtin)
    ratios = {
        f"c{c}": {
            "gateway_vllm_over_vllm_alone": results[f"gateway_vllm_c{c}"]["tokens_per_s"]
            / results[f"vllm_alone_c{c}"]["tokens_per_s"],
            "gateway_vllm_over_gateway_builtin": results[f"gateway_vllm_c{c}"]["tokens_per_s"]
            / results[f"gateway_builtin_c{c}"]["tokens_per_s"],
        }
        for c in (1, 16)
    }
    path = write(
        "vllm",
        {
            "method": __doc__,
            "settings": {
                "max_tokens": args.max_tokens,
                "rounds": args.rounds,
                "sigma": 1.0,
                "dtype": "float32",
            },
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "arms": results,
            "ratios": ratios,
        },
    )
    print(json.dumps(ratios, indent=2), f"\nwritten to {path}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
