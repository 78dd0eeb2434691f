"""Generation over HTTP with the real SmolLM2 preset: /v1/generate, SSE, and the official openai client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from openai import OpenAI, RateLimitError

from service.serving.generation import encode_prompt
from service.store import EmbeddedRedis
from tests.api.conftest import serve_preset
from tests.live import LiveService, escaped_json


@pytest.fixture(scope="module")
def llm_service(redis_server: EmbeddedRedis, module_tiers: Path) -> Iterator[LiveService]:
    yield from serve_preset("smollm2-135m", redis_server, module_tiers)


def _openai(service: LiveService, key: str) -> OpenAI:
    return OpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0, timeout=120)


def test_openai_client_completion_chat_and_streaming(llm_service: LiveService) -> None:
    _, key = llm_service.new_tenant("standard")
    client = _openai(llm_service, key)
    assert [m.id for m in client.models.list().data] == ["smollm2-135m"]
    completion = client.completions.create(
        model="smollm2-135m", prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert completion.choices[0].text.strip() and completion.usage is not None
    assert completion.usage.completion_tokens <= 8
    messages = [{"role": "user", "content": "Say hello in one short sentence."}]
    chat = client.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=16)  # type: ignore[arg-type]
    text = chat.choices[0].message.content
    assert text and chat.choices[0].finish_reason in ("stop", "length")
    again = client.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=16)  # type: ignore[arg-type]
    assert again.choices[0].message.content == text  # keyed noise and keyed sampling: same answer
    chunks = list(
        client.chat.completions.create(
            model="smollm2-135m",
            messages=messages,  # type: ignore[arg-type]
            max_tokens=16,
            stream=True,
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    parts = list(
        client.completions.create(model="smollm2-135m", prompt="One, two,", max_tokens=6, stream=True)
    )
    assert "".join(p.choices[0].text for p in parts).strip()


def test_premium_is_plain_greedy_and_free_is_keyed(llm_service: LiveService) -> None:
    _, premium = llm_service.new_tenant("premium")
    _, free = llm_service.new_tenant("free")
    body = {"prompt": "Write one sentence about the sea.", "max_new_tokens": 20}
    with llm_service.client(premium) as p, llm_service.client(free) as f:
        clean = p.post("/v1/generate", json=body).json()
        noisy = f.post("/v1/generate", json=body).json()
        noisy_again = f.post("/v1/generate", json=body).json()
    model = llm_service.components.model  # type: ignore[union-attr]
    ids = encode_prompt(model.tokenizer, body["prompt"])
    with torch.inference_mode():
        out = model.model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False)
    plain = model.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
    assert clean["text"] == plain and clean["modulation"]["sigma"] == 0.0
    assert noisy["text"] == noisy_again["text"] and noisy["modulation"]["sigma"] == 4.0
    assert noisy["text"] != clean["text"]
    assert clean["usage"]["completion_tokens"] <= 20


def test_generate_streams_server_sent_events(llm_service: LiveService) -> None:
    _, key = llm_service.new_tenant("standard")
    body = {"prompt": "List three fruits:", "max_new_tokens": 12}
    with llm_service.client(key) as c:
        whole = c.post("/v1/generate", json=body).json()
        with c.stream("POST", "/v1/generate", json={**body, "stream": True}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    frames = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(f["text"] for f in frames) == whole["text"]
    assert frames[-1]["finish_reason"] in ("stop", "length")
    assert frames[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]


def test_generation_errors_keep_their_status(llm_service: LiveService) -> None:
    _, key = llm_service.new_tenant("standard")
    with llm_service.client(key) as c:
        assert c.post("/v1/generate", json={"prompt": ""}).status_code == 422
        assert c.post("/v1/generate", json={"prompt": "x", "max_new_tokens": 0}).status_code == 422
        too_long = c.post("/v1/generate", json={"prompt": "word " * 9000, "max_new_tokens": 4})
        assert too_long.status_code in (400, 413), too_long.text
        assert c.post("/v1/classify", json={"inputs": ["x"]}).json()["error"]["code"] == "unsupported_task"
        chat = c.post("/v1/chat/completions", json={"messages": [], "model": "m"})
        assert chat.status_code == 422
        user = [{"role": "user", "content": "hi"}]
        for path, body in [
            ("/v1/generate", {"prompt": "x", "temperature": 3}),  # the engine's maximum is the schema's
            ("/v1/generate", {"prompt": "x", "stream": 0}),
            ("/v1/generate", {"prompt": "x", "stop": ["s"] * 17}),
            ("/v1/completions", {"prompt": "x", "stop": [""]}),
            ("/v1/completions", {"prompt": "x", "max_tokens": True}),
            ("/v1/chat/completions", {"messages": user, "stream": "yes"}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "\ud800"}]}),
            ("/v1/completions", {"prompt": "a\udbff"}),
            ("/v1/generate", {"prompt": "x", "stop": ["\ud800"]}),
        ]:
            r = c.post(path, **escaped_json(body))
            assert r.status_code == 422, (path, body, r.text)
            assert r.json()["error"]["code"] == "invalid_request"
        ok = c.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2.0, "stop": "\n"})
        assert ok.status_code == 200, ok.text  # 2.0 is a JSON integer


def test_focus_on_strings_for_generation(llm_service: LiveService) -> None:
    _, key = llm_service.new_tenant("premium")
    with llm_service.client(key) as c:
        r = c.put("/v1/me/focus", json={"classes": ["banana"], "strength": 3.0})
        assert r.status_code == 200
        me = c.get("/v1/me").json()
        assert me["focus"]["classes"] == ["banana"]
        out = c.post("/v1/generate", json={"prompt": "My favourite fruit is", "max_new_tokens": 12}).json()
        assert out["modulation"]["focus"]["classes"] == ["banana"]
        assert "banana" in out["text"].lower()


def test_rate_limited_client_sees_429(llm_service: LiveService) -> None:
    _, key = llm_service.new_tenant("tiny")  # 5 requests per minute
    client = _openai(llm_service, key)
    for _ in range(5):
        client.models.list()
    with pytest.raises(RateLimitError):
        client.models.list()
    with httpx.Client(base_url=llm_service.url) as anon:
        assert anon.get("/healthz").status_code == 200


def test_decoding_fields_and_second_accounts_do_not_reroll_the_draw(llm_service: LiveService) -> None:
    """Issue #11: dummy stop strings, max_new_tokens and stream used to pick a fresh draw each time."""
    _, first = llm_service.new_tenant("free")
    _, second = llm_service.new_tenant("free")
    body = {"prompt": "Name a fruit.", "max_new_tokens": 8}
    with llm_service.client(first) as a, llm_service.client(second) as b:
        texts = [
            a.post("/v1/generate", json=body).json()["text"],
            a.post("/v1/generate", json={**body, "stop": ["QQZZ1"]}).json()["text"],
            a.post("/v1/generate", json={**body, "stop": ["QQZZ2"]}).json()["text"],
            b.post("/v1/generate", json=body).json()["text"],
        ]
        longer = a.post("/v1/generate", json={**body, "max_new_tokens": 12}).json()["text"]
    assert len(set(texts)) == 1, texts
    assert longer.startswith(texts[0]), (longer, texts[0])
