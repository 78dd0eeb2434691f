"""SIGTERM with streams running: `aimserve serve` in its own process, real SSE streams over HTTP.

Short streams finish normally; streams still running when AIM_SHUTDOWN_GRACE_S is over end with an error
event (`shutting_down`) and `[DONE]`, never a body cut mid-stream; the process then exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from service.presets import build_preset
from service.store import EmbeddedRedis
from tests.live import ADMIN_TOKEN, SECRET, free_port, state_dir, wait_for

GRACE_S = 3.0


def _events(url: str, key: str, max_new_tokens: int, out: list[list[str]]) -> None:
    """Read one stream to its end; append its ``data:`` payloads (a cut body raises and appends nothing)."""
    messages = [{"role": "user", "content": "Tell me a long story about the sea."}]
    body = {"messages": messages, "max_tokens": max_new_tokens, "temperature": 0, "stream": True}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
        out.append([line[6:] for line in r.iter_lines() if line.startswith("data: ")])


def test_sigterm_ends_running_streams_with_shutting_down_and_done(
    redis_server: EmbeddedRedis, module_tiers: Path
) -> None:
    build_preset("smollm2-135m", state_dir())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "AIM_STATE_DIR": str(state_dir()),
        "AIM_ADMIN_TOKEN": ADMIN_TOKEN,
        "AIM_SECRET": SECRET,
        "AIM_SHUTDOWN_GRACE_S": str(GRACE_S),
    }
    cmd = [sys.executable, "-m", "service.cli", "serve", "--model", "smollm2-135m"]
    cmd += ["--tiers", str(module_tiers), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env)
    try:
        assert wait_for(lambda: _ready(url), 180), "the service did not become ready"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as a:
            key = a.post("/admin/tenants", json={"name": "s", "tier": "premium"}).json()["api_key"]
        short: list[list[str]] = []
        long: list[list[str]] = []
        threads = [threading.Thread(target=_events, args=(url, key, 2, short)) for _ in range(2)]
        threads += [threading.Thread(target=_events, args=(url, key, 1024, long)) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # all four are admitted
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        for t in threads:
            t.join(120)
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown: exit by that signal.
        assert proc.wait(60) in (0, -signal.SIGTERM)
        assert time.monotonic() - sent < GRACE_S + 10
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(short) == 2 and len(long) == 2  # every body was read to its end
    for events in short + long:  # every stream ends with a final frame then [DONE], never mid-body
        assert events[-1] == "[DONE]", events[-3:]
    # Short streams finish (on a loaded machine one may still be running at the deadline: then it ends
    # like the long ones); long ones end with the shutting_down error event.
    for events in short:
        last = json.loads(events[-2])
        assert last.get("error", {}).get("code") == "shutting_down" or (
            last["choices"][0]["finish_reason"] == "length"
        ), events[-3:]
    for events in long:
        assert json.loads(events[-2]).get("error", {}).get("code") == "shutting_down", events[-3:]
        assert len(events) >= 3  # tokens were streamed before the end


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
