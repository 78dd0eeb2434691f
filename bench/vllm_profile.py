"""Where gateway+vLLM spends its time at one client: py-spy on the gateway and on vLLM's two processes.

`aimserve serve --engine vllm` (a free tenant, σ = 1.0 on every row, as in `bench.vllm`) answers one
streaming client at a time for ``--seconds``, while ``py-spy record`` samples the gateway, vLLM's API server
and vLLM's engine core (the process that runs the model and our logits processor). On a machine of few
cores the three compete for the same CPUs, so every busy sample of the gateway or of vLLM's API server is
time the model step may wait for.

Run: ``python -m bench.vllm_profile [--seconds 60] [--rate 50] [--port 18660]``; writes the raw profiles
and a summary (`bench.profile`) under bench/results/profiles/vllm-c1-*.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.profile import inclusive, summarize
from bench.vllm import PROMPTS, TIERS, _stop, serve, tenant, wait_ready
from bench.vllm_arms import MODEL, gateway, one

OUT = Path(__file__).resolve().parent / "results" / "profiles"


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def vllm_processes(gateway_pid: int) -> dict[str, int]:
    """vLLM's processes under the gateway's supervised child, by role: its API server (HTTP, detokenizing,
    JSON), its engine core (scheduling) and its worker (the model and our logits processor)."""
    (api,) = [p for p in children(gateway_pid) if b"api_server" in Path(f"/proc/{p}/cmdline").read_bytes()]
    found, todo = {"vllm-api": api}, [api]
    while todo:
        for child in children(todo.pop()):
            todo.append(child)
            comm = Path(f"/proc/{child}/comm").read_text()
            for role, name in (("vllm-engine-core", "EngineCor"), ("vllm-worker", "Worker")):
                if name in comm:
                    found.setdefault(role, child)
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--rate", type=int, default=50)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--port", type=int, default=18660)
    p.add_argument("--state", default=os.environ.get("AIM_STATE_DIR", ".aimserve"))
    args = p.parse_args(argv)
    from service.presets import build_preset

    state = Path(args.state).resolve()
    build_preset(MODEL, state)
    tiers = state / "bench-vllm-tiers.yaml"
    tiers.write_text(TIERS)
    OUT.mkdir(parents=True, exist_ok=True)
    proc = serve("vllm", args.port, args.port + 1, state, tiers)
    summary: dict[str, Any] = {"load_1m_before": os.getloadavg()[0]}
    try:
        url = f"http://127.0.0.1:{args.port}"
        wait_ready(url)
        build = gateway(tenant(url), PROMPTS)
        pids = {"gateway": proc.pid, **vllm_processes(proc.pid)}
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "-r", str(args.rate), "--format", "raw"]
        spies = {
            name: subprocess.Popen(
                [*spy, "-p", str(pid), "-d", str(args.seconds), "-o", str(OUT / f"vllm-c1-{name}.txt")],
                stdout=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
        }
        time.sleep(2.0)  # py-spy attached
        summary["requests"], summary["tokens"] = asyncio.run(
            _clients(url, build, args.seconds - 4, args.max_tokens)
        )
        for running in spies.values():
            running.wait(args.seconds + 60)
    finally:
        _stop(proc)
    summary["load_1m_after"] = os.getloadavg()[0]
    for name in pids:
        raw = OUT / f"vllm-c1-{name}.txt"
        summary[name] = {**summarize(raw, top=12), "inclusive": inclusive(raw, top=25)}
    (OUT / "vllm-c1-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


async def _clients(url: str, build: Any, seconds: float, n: int) -> tuple[int, int]:
    """One client, requests back to back over the prompts, for ``seconds``: (requests, tokens)."""
    deadline, requests, tokens = time.monotonic() + seconds, 0, 0
    async with httpx.AsyncClient(timeout=600) as c:
        while time.monotonic() < deadline:
            got, _ = await one(c, url, build, requests % len(PROMPTS), n)
            requests, tokens = requests + 1, tokens + got
    return requests, tokens


if __name__ == "__main__":
    main()
