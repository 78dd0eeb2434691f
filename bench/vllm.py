"""Text generation on vLLM vs vLLM alone vs the built-in engine: tokens/s and time to first token, one run.

Arms, same prompts (the same prompt token ids), greedy, streamed over HTTP, at 1 and 16 concurrent
clients, every request of every arm producing the same number of tokens (the gateway tenant's completion
length for that prompt; the direct vLLM arms get that count with ``ignore_eos``):
- gateway+vllm: `aimserve serve --engine vllm` (its supervised vLLM child), a free tenant whose every row
  is modulated (σ > 0) by our logits processor, behind auth, rate limit, keys and metrics;
- vllm+processor: that same child asked directly with the gateway's own body (`completion_body`: a
  modulated row, semantic codes, raw top-1 logprobs for live fidelity), no gateway: what the processor
  and logprobs cost, so that gateway+vllm / vllm+processor is what the gateway itself costs;
- vllm alone: a second vLLM server, started with the supervisor's exact command minus
  ``--logits-processors`` and without `service` on its path (checked: it accepts a malformed ``aim_*``
  argument that our processor refuses), asked as a plain client would (no logprobs, no ``vllm_xargs``);
- gateway+builtin: `aimserve serve --engine builtin` with the same tenant tier.
Targets: gateway+vllm >= 0.90x vllm alone; >= 2x gateway+builtin on a CPU. The servers run one at a time.

Run: ``python -m bench.vllm [--max-tokens 64] [--rounds 5] [--port-base 18600]``; writes
bench/results/vllm.json with the machine's load average per arm (figures measured on a shared, loaded
machine are lower bounds of each arm, and the ratios are what to read).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import write
from bench.vllm_arms import MODEL, arm, direct, gateway, has_no_processor, lengths, plain_vllm

ADMIN = "bench-admin-token-0123456789"
SECRET = "bench-secret-0123456789abcdef"
METRICS = "bench-metrics-token-0123456789"
SIGMA = 1.0
TIERS = (
    "default_tier: free\ntiers:\n"
    f"  free:\n    sigma: {SIGMA}\n    rate_limit: {{requests_per_minute: 100000}}\n"
)
PROMPTS = [
    "Explain gravity in two sentences.",
    "Write a short story about a dragon who learns to cook.",
    "What should I pack for a weekend of hiking in the mountains?",
    "List five uses of a paper clip.",
]
CLIENTS = (1, 16)


def serve(engine: str, port: int, vllm_port: int, state: Path, tiers: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AIM_STATE_DIR": str(state), "AIM_ADMIN_TOKEN": ADMIN, "AIM_SECRET": SECRET}
    env.update(AIM_METRICS_TOKEN=METRICS, AIM_MAX_BATCH_SIZE="16", AIM_ENGINE=engine)
    env.update(AIM_VLLM_PORT=str(vllm_port))
    cmd = [sys.executable, "-m", "service.cli", "serve", "--model", MODEL, "--tiers", str(tiers)]
    cmd += ["--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def wait_ready(url: str, path: str = "/readyz", timeout_s: float = 1200.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}{path}", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"{url} did not become ready")


def tenant(url: str) -> str:
    r = httpx.post(
        f"{url}/admin/tenants",
        json={"name": "bench", "tier": "free"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    r.raise_for_status()
    return str(r.json()["api_key"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--port-base", type=int, default=18600, help="ports base .. base + 3 are used")
    p.add_argument("--state", default=os.environ.get("AIM_STATE_DIR", ".aimserve"))
    args = p.parse_args(argv)
    from transformers import AutoTokenizer

    from service.presets import build_preset
    from service.serving.generation import encode_prompt

    state = Path(args.state).resolve()
    folder = build_preset(MODEL, state)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt_ids = [encode_prompt(tokenizer, text) for text in PROMPTS]
    tiers = state / "bench-vllm-tiers.yaml"
    tiers.write_text(TIERS)
    gw_port, builtin_port, child_port, plain_port = (args.port_base + i for i in range(4))
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    n, rounds, k = args.max_tokens, args.rounds, len(PROMPTS)

    proc = serve("vllm", gw_port, child_port, state, tiers)
    try:
        url = f"http://127.0.0.1:{gw_port}"
        wait_ready(url)
        through = gateway(tenant(url), PROMPTS)
        counts = lengths(url, through, k, n)
        with_processor = direct(prompt_ids, counts, sigma=SIGMA)
        for c in CLIENTS:
            results[f"gateway_vllm_c{c}"] = arm(url, through, c, rounds, n, k)
            results[f"vllm_processor_c{c}"] = arm(
                f"http://127.0.0.1:{child_port}", with_processor, c, rounds, n, k
            )
    finally:
        _stop(proc)

    proc, cmd = plain_vllm(folder, plain_port, max_num_seqs=16)
    try:
        url = f"http://127.0.0.1:{plain_port}"
        wait_ready(url, "/health")
        if not has_no_processor(url):
            raise RuntimeError("the baseline vLLM refused an aim_* argument: an aimserve processor is loaded")
        for c in CLIENTS:
            results[f"vllm_alone_c{c}"] = arm(url, direct(prompt_ids, counts, sigma=None), c, rounds, n, k)
    finally:
        _stop(proc)

    proc = serve("builtin", builtin_port, child_port, state, tiers)
    try:
        url = f"http://127.0.0.1:{builtin_port}"
        wait_ready(url)
        for c in CLIENTS:
            results[f"gateway_builtin_c{c}"] = arm(url, gateway(tenant(url), PROMPTS), c, rounds, n, k)
    finally:
        _stop(proc)

    ratios = {}
    for c in CLIENTS:
        tps = {name: results[f"{name}_c{c}"]["tokens_per_s"] for name in ("gateway_vllm", "vllm_processor")}
        alone, builtin = results[f"vllm_alone_c{c}"], results[f"gateway_builtin_c{c}"]
        ratios[f"c{c}"] = {
            "gateway_vllm_over_vllm_alone": tps["gateway_vllm"] / alone["tokens_per_s"],
            "vllm_processor_over_vllm_alone": tps["vllm_processor"] / alone["tokens_per_s"],
            "gateway_vllm_over_vllm_processor": tps["gateway_vllm"] / tps["vllm_processor"],
            "gateway_vllm_over_gateway_builtin": tps["gateway_vllm"] / builtin["tokens_per_s"],
            "equal_tokens": len({results[f"{a}_c{c}"]["tokens"] for a in ARMS}) == 1,
        }
    path = write(
        "vllm",
        {
            "method": __doc__,
            "settings": {"max_tokens": n, "rounds": rounds, "sigma": SIGMA, "dtype": "float32"},
            "tokens_per_prompt": counts,
            "baseline_command": cmd,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "arms": results,
            "ratios": ratios,
        },
    )
    print(json.dumps(ratios, indent=2), f"\nwritten to {path}")


ARMS = ("gateway_vllm", "vllm_processor", "vllm_alone", "gateway_builtin")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
