"""The gateway on a real vLLM (CPU build, float32, --enforce-eager, the smollm2 preset): the session's one
vLLM (conftest.py), supervised by the gateway exactly as `aimserve serve --engine vllm` does.

The last test kills vLLM mid-stream and waits for the supervisor to bring it back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import httpx
from openai import OpenAI

from service.serving.generation import encode_chat, encode_prompt
from service.serving.generation.vllm.supervisor import VllmChild
from tests.live import LiveService, wait_for
from tests.serving.generation.vllm.live_vllm import LONG, PROMPT, START_S, engine, generate


def test_premium_equals_vllm_greedy_and_free_is_keyed(svc: LiveService) -> None:
    _, premium = svc.new_tenant("premium")
    _, free = svc.new_tenant("free")
    _, other = svc.new_tenant("free")
    clean = generate(svc, premium, {"prompt": PROMPT})
    ids = encode_prompt(svc.components.model.tokenizer, PROMPT)  # type: ignore[union-attr]
    direct = httpx.post(  # vLLM itself, no gateway, no arguments for our processor
        f"{engine(svc).backend.url}/v1/completions",
        json={"model": "smollm2-135m", "prompt": list(ids), "max_tokens": 24, "temperature": 0},
        timeout=300,
    ).json()
    assert clean["text"] and clean["text"] == direct["choices"][0]["text"]
    noisy = generate(svc, free, {"prompt": PROMPT})
    assert generate(svc, free, {"prompt": PROMPT})["text"] == noisy["text"]
    assert noisy["text"] != clean["text"]
    # The noise is keyed by tier and prompt (docs/security.md): a second account of the tier draws the same.
    assert generate(svc, other, {"prompt": PROMPT})["text"] == noisy["text"]


def test_mixed_concurrent_batch_gives_every_row_its_solo_output(svc: LiveService) -> None:
    keys = [svc.new_tenant(t)[1] for t in ("premium", "free", "free")]
    prompts = [PROMPT, "List three fruits:", PROMPT, "The capital of France is"]
    cases = [(keys[i % 3], prompts[i % 4]) for i in range(8)]
    solo = [generate(svc, k, {"prompt": p})["text"] for k, p in cases]

    async def together() -> list[str]:
        async with httpx.AsyncClient(base_url=svc.url, timeout=300) as c:
            rs = await asyncio.gather(
                *(
                    c.post(
                        "/v1/generate",
                        json={"prompt": p, "max_new_tokens": 24},
                        headers={"Authorization": f"Bearer {k}"},
                    )
                    for k, p in cases
                )
            )
        return [r.json()["text"] for r in rs]

    assert asyncio.run(together()) == solo


def test_client_engine_fields_change_nothing(svc: LiveService) -> None:
    _, free = svc.new_tenant("free")
    plain = generate(svc, free, {"prompt": PROMPT})["text"]
    for extra in (
        {"vllm_xargs": {"aim_sigma": 0, "sigma": 0}},
        {"logits_processors": []},
        {"seed": 1, "repetition_penalty": 2.0, "logprobs": 5},
    ):
        with svc.client(free, timeout=300) as c:
            r = c.post("/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 24, **extra})
            assert r.status_code in (200, 422), r.text
            if r.status_code == 200:
                assert r.json()["text"] == plain, extra
            o = c.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 8, "temperature": 0, **extra})
            base = c.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 8, "temperature": 0})
            assert (
                o.status_code == 200 and o.json()["choices"][0]["text"] == base.json()["choices"][0]["text"]
            )


def test_focus_on_strings_raises_the_chosen_tokens(svc: LiveService) -> None:
    _, key = svc.new_tenant("premium")
    body = {"prompt": "My favourite fruit is", "max_new_tokens": 12}
    before = generate(svc, key, body)["text"].lower()
    with svc.client(key) as c:
        assert c.put("/v1/me/focus", json={"classes": ["banana"], "strength": 8.0}).status_code == 200
    after = generate(svc, key, body)
    assert after["modulation"]["focus"]["classes"] == ["banana"]
    assert after["text"].lower().count("banana") > before.count("banana")


def test_official_openai_client_streaming_included(svc: LiveService) -> None:
    _, key = svc.new_tenant("free")
    client = OpenAI(base_url=f"{svc.url}/v1", api_key=key, max_retries=0, timeout=300)
    messages = [{"role": "user", "content": "Say hello in one short sentence."}]
    chat = client.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=16)  # type: ignore[arg-type]
    text = chat.choices[0].message.content
    assert text and chat.usage is not None and chat.usage.completion_tokens <= 16
    chunks = list(
        client.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=16, stream=True)  # type: ignore[arg-type]
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text  # keyed sampling: same answer
    parts = list(
        client.completions.create(model="smollm2-135m", prompt="One, two,", max_tokens=6, stream=True)
    )
    assert "".join(p.choices[0].text for p in parts).strip()
    ids = encode_chat(svc.components.model.tokenizer, messages)  # type: ignore[union-attr]
    assert len(ids) > 3


def test_metrics_count_vllm_tokens_ttft_and_fidelity(svc: LiveService) -> None:
    _, key = svc.new_tenant("free")
    out = generate(svc, key, {"prompt": "Name a colour.", "stream": False})
    text = svc.metrics()

    def value(prefix: str) -> float:
        (line,) = [ln for ln in text.splitlines() if ln.startswith(prefix + '{tier="free"}')]
        return float(line.split()[-1])

    assert value("aim_generated_tokens_total") >= out["usage"]["completion_tokens"]
    assert value("aim_time_to_first_token_seconds_count") >= 1
    assert value("aim_fidelity_rows_total") >= out["usage"]["completion_tokens"]
    assert 0 < value("aim_fidelity_matches_total") <= value("aim_fidelity_rows_total")


async def _first_frame_at(c: httpx.AsyncClient, key: str, tokens: int, ready: asyncio.Event | None) -> float:
    """Stream a generation; the loop time of its first frame (then ``ready`` is set), after reading all."""
    body = {"prompt": LONG, "max_new_tokens": tokens, "stream": True}
    first = None
    async with c.stream("POST", "/v1/generate", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if first is None and line.startswith("data: "):
                first = asyncio.get_running_loop().time()
                if ready is not None:
                    ready.set()
    assert first is not None
    return first


def test_a_higher_tier_joins_vllms_running_batch_first(svc: LiveService) -> None:
    """vLLM's batch (16 rows) full of free rows of different lengths: a free request, then a premium one
    (priority 2), wait; the premium takes the first slot that frees (vLLM's priority scheduling)."""
    _, free = svc.new_tenant("free")
    _, premium = svc.new_tenant("premium")

    async def main() -> tuple[float, float]:
        async with httpx.AsyncClient(base_url=svc.url, timeout=600) as c:
            started = [asyncio.Event() for _ in range(16)]
            fill = [asyncio.create_task(_first_frame_at(c, free, 40 + 8 * i, started[i])) for i in range(16)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 300)  # all 16 running
            late_free = asyncio.create_task(_first_frame_at(c, free, 4, None))
            await asyncio.sleep(0.5)  # the free request is surely first in vLLM's queue
            late_premium = asyncio.create_task(_first_frame_at(c, premium, 4, None))
            times = await asyncio.gather(late_free, late_premium)
            await asyncio.gather(*fill)
            return times[0], times[1]

    free_at, premium_at = asyncio.run(main())
    assert premium_at < free_at, (premium_at, free_at)  # first come, first served would be the reverse


def test_vllm_killed_mid_stream_errors_then_503_then_recovers(svc: LiveService) -> None:
    _, key = svc.new_tenant("free")
    backend = engine(svc).backend
    assert isinstance(backend, VllmChild) and backend.pid is not None
    with svc.client(key, timeout=300) as c:
        with c.stream(
            "POST", "/v1/generate", json={"prompt": LONG, "max_new_tokens": 400, "stream": True}
        ) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert "error" not in json.loads(first[6:])
            os.killpg(backend.pid, signal.SIGKILL)
            rest = [line for line in lines if line.startswith("data: ")]
        assert rest[-1] == "data: [DONE]"
        assert json.loads(rest[-2][6:])["error"]["code"] == "engine_unavailable"
        assert wait_for(lambda: c.get("/readyz").status_code == 503, 30)
        refused = c.post("/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 4})
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert refused.json()["error"]["code"] == "engine_unavailable"
        assert wait_for(lambda: c.get("/readyz").status_code == 200, START_S), "vLLM did not come back"
        assert c.post("/v1/generate", json={"prompt": PROMPT, "max_new_tokens": 4}).status_code == 200
    assert backend.restarts >= 1
