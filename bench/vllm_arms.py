"""Clients and servers of `bench.vllm`: one streamed completion, one timed arm, a plain vLLM server.

Every arm asks for the same number of tokens per prompt: the gateway's arms stop where the tenant's
(keyed, deterministic) completion stops, and the direct vLLM arms are sent that count with ``ignore_eos``,
so tokens/s compares equal work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from service.modulation import RowSpec
from service.serving.generation import GenerationRequest
from service.serving.generation.vllm.config import VllmSettings
from service.serving.generation.vllm.engine import completion_body
from service.serving.generation.vllm.supervisor import PROCESSOR, VllmChild

MODEL = "smollm2-135m"
ROW_KEY, PROJECTION = (0x1234_5678, 0x9ABC_DEF0), (2024, 77)  # any key: the cost does not depend on it

# (prompt index, token count) -> (url path, body, headers) of one request.
Build = Callable[[int, int], tuple[str, dict[str, Any], dict[str, str]]]


def gateway(key: str, prompts: list[str]) -> Build:
    """The gateway's native /v1/generate: ``max_new_tokens`` is the bench's cap; EOS ends a row."""

    def build(i: int, n: int) -> tuple[str, dict[str, Any], dict[str, str]]:
        return "/v1/generate", {"prompt": prompts[i], "max_new_tokens": n}, {"Authorization": f"Bearer {key}"}

    return build


def direct(prompt_ids: list[tuple[int, ...]], counts: list[int], *, sigma: float | None) -> Build:
    """vLLM's completions route with the prompt token ids the gateway sends and exactly ``counts[i]``
    tokens. ``sigma``: None = what a plain client sends (no logprobs, no ``vllm_xargs``); a number = the
    gateway's own body (`completion_body`: raw top-1 logprobs, a modulated row with semantic codes)."""

    def build(i: int, n: int) -> tuple[str, dict[str, Any], dict[str, str]]:
        del n
        if sigma is None:
            body: dict[str, Any] = {"model": MODEL, "prompt": list(prompt_ids[i]), "temperature": 0.0}
            body.update(max_tokens=counts[i], stream=True, stream_options={"include_usage": True})
        else:
            spec = RowSpec(sigma, ROW_KEY)
            req = GenerationRequest(prompt_ids[i], counts[i], spec, projection=PROJECTION)
            body = completion_body(MODEL, req)
        body["ignore_eos"] = True
        return "/v1/completions", body, {}

    return build


async def one(c: httpx.AsyncClient, url: str, build: Build, i: int, n: int) -> tuple[int, float]:
    """(completion tokens, seconds to the first text) of one streamed completion."""
    path, body, headers = build(i, n)
    body["stream"] = True
    start, first, tokens = time.perf_counter(), None, 0
    async with c.stream("POST", url + path, json=body, headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"{url}{path}: {chunk['error']}")
            texts = [ch.get("text") for ch in chunk.get("choices", [])] + [chunk.get("text")]
            if first is None and any(texts):
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    return tokens, first if first is not None else time.perf_counter() - start


def lengths(url: str, build: Build, prompts: int, n: int) -> list[int]:
    """Tokens the gateway's tenant gets for each prompt (keyed: the same on every request)."""

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=600) as c:
            return [(await one(c, url, build, i, n))[0] for i in range(prompts)]

    return asyncio.run(run())


def arm(url: str, build: Build, clients: int, rounds: int, n: int, prompts: int) -> dict[str, Any]:
    """Tokens/s and median time to first token of ``rounds`` waves of ``clients`` concurrent requests
    (prompt (round + client) mod ``prompts``), after one short warm-up request."""

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=600) as c:
            await one(c, url, build, 0, n)  # warm-up (connection, caches)
            ttfts: list[float] = []
            tokens = 0
            load = os.getloadavg()[0]
            start = time.perf_counter()
            for r in range(rounds):
                jobs = [one(c, url, build, (r + i) % prompts, n) for i in range(clients)]
                for t, first in await asyncio.gather(*jobs):
                    tokens += t
                    ttfts.append(first)
            wall = time.perf_counter() - start
        return {
            "tokens_per_s": tokens / wall,
            "ttft_median_s": statistics.median(ttfts),
            "tokens": tokens,
            "load_1m": [load, os.getloadavg()[0]],
        }

    return asyncio.run(run())


def plain_vllm(folder: Path, port: int, max_num_seqs: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    """vLLM's server exactly as the gateway's supervisor starts it, but without our logits processor
    (no ``--logits-processors``, and `service` is not on its path, so it cannot load one)."""
    settings = dataclasses.replace(VllmSettings.from_env(), port=port)
    child = VllmChild(folder, MODEL, settings, max_num_seqs=max_num_seqs)
    cmd = child.command(port)
    at = cmd.index("--logits-processors")
    if cmd[at + 1] != PROCESSOR:
        raise RuntimeError(f"unexpected supervisor command {cmd!r}")
    del cmd[at : at + 2]
    env = child.environment()
    env.pop("PYTHONPATH", None)
    return subprocess.Popen(cmd, env=env, start_new_session=True), cmd


def has_no_processor(url: str) -> bool:
    """True when the server accepts a malformed ``aim_*`` argument (our processor's `validate_params`
    would refuse it with a 400): proof that the baseline runs no aimserve processor."""
    body = {"model": MODEL, "prompt": [1, 2, 3], "max_tokens": 1, "vllm_xargs": {"aim_sigma": "bad"}}
    return httpx.post(f"{url}/v1/completions", json=body, timeout=300).status_code == 200
