"""Generation admission over HTTP, real SmolLM2 preset and built-in engine: the per-request compute budget
(413 ``request_too_costly``) on every generation route and the per-tenant cap on streams in flight (429
``too_many_in_flight`` with Retry-After)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from service.presets import build_preset
from service.store import EmbeddedRedis
from tests.live import LiveService, state_dir, wait_for

BUDGET = 300  # AIM_MAX_REQUEST_TOKENS: prompt tokens + max new tokens
STREAMS = 2  # AIM_TENANT_MAX_ROWS: one row per completion in flight


@pytest.fixture(scope="module")
def llm(redis_server: EmbeddedRedis, module_tiers: Path) -> Iterator[LiveService]:
    build_preset("smollm2-135m", state_dir())
    env = {"AIM_MAX_REQUEST_TOKENS": str(BUDGET), "AIM_TENANT_MAX_ROWS": str(STREAMS)}
    service = LiveService("smollm2-135m", module_tiers, redis_server.url, env=env).start()
    yield service
    service.stop()


def _too_costly(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "request_too_costly"
    assert f"budget is {BUDGET} tokens" in error["message"] and "AIM_MAX_REQUEST_TOKENS" in error["message"]


def test_every_generation_route_refuses_a_request_over_the_compute_budget(llm: LiveService) -> None:
    _, key = llm.new_tenant("premium")
    chat = {"messages": [{"role": "user", "content": "Say hi."}]}
    with llm.client(key) as c:
        _too_costly(c.post("/v1/generate", json={"prompt": "Say hi.", "max_new_tokens": BUDGET}))
        _too_costly(c.post("/v1/completions", json={"prompt": "Say hi.", "max_tokens": BUDGET}))
        _too_costly(c.post("/v1/chat/completions", json={**chat, "max_completion_tokens": BUDGET}))
        _too_costly(c.post("/v1/generate", json={"prompt": "word " * BUDGET, "max_new_tokens": 1}))
        within = c.post("/v1/generate", json={"prompt": "Say hi.", "max_new_tokens": 4})
        assert within.status_code == 200 and within.json()["usage"]["completion_tokens"] >= 1
        chat_ok = c.post("/v1/chat/completions", json={**chat, "max_completion_tokens": 4})
        assert chat_ok.status_code == 200, chat_ok.text


def _open_stream(stack: ExitStack, c: httpx.Client) -> Iterator[str]:
    """A streaming generation, held open once its first frame arrived (so it is admitted and running).
    The caller keeps the returned line iterator: dropping it closes the connection (a client gone)."""
    prompt = "Once upon a time, in a small village by the sea,"  # greedy SmolLM2 goes on for long
    body = {"prompt": prompt, "max_new_tokens": 250, "stream": True}
    r = stack.enter_context(c.stream("POST", "/v1/generate", json=body))
    assert r.status_code == 200
    lines = r.iter_lines()
    first = json.loads(next(lines).removeprefix("data: "))
    assert first["text"] and "finish_reason" not in first, first  # a token, not the end
    return lines


def test_a_tenant_over_its_streams_in_flight_gets_429_with_retry_after_and_others_do_not(
    llm: LiveService,
) -> None:
    _, key = llm.new_tenant("premium", "streamer")
    _, other = llm.new_tenant("premium", "neighbour")
    small = {"prompt": "Say hi.", "max_new_tokens": 2}
    with llm.client(key) as c, llm.client(key) as c2, llm.client(other) as o:
        with ExitStack() as held:
            streams = [_open_stream(held, client) for client in (c, c2)]
            refused = c.post("/v1/generate", json=small)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "too_many_in_flight"
            assert int(refused.headers["Retry-After"]) >= 1
            chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
            assert c.post("/v1/chat/completions", json=chat).status_code == 429  # every route counts
            assert o.post("/v1/generate", json=small).status_code == 200  # a neighbour is served
            assert all(next(x for x in lines if x).startswith("data: ") for lines in streams)  # still on
        # Both streams closed by the client: their rows come back without waiting for 250 tokens.
        assert wait_for(lambda: c.post("/v1/generate", json=small).status_code == 200, 10.0)
