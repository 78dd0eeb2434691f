"""A vLLM started without ``--max-logprobs 128`` (an operator's own server behind ``AIM_VLLM_URL``): the
engine turns traffic sampling off and serves, instead of answering tenants 400 for the operator's setting.

The server here speaks vLLM's wire for what the engine uses (``/health``, streamed ``/v1/completions`` with
per-step ``logprobs``) and refuses more than 20 logprobs with vLLM's own message and status.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from service.modulation import RowSpec
from service.serving.generation import GenerationDone, GenerationRequest
from service.serving.traffic import GENERATION_TOP
from tests.live import free_port, wait_for
from tests.serving.generation.vllm.test_steps import small_engine


def capped_vllm(asked: list[int]) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        asked.append(body["logprobs"])
        if body["logprobs"] > 20:
            k = body["logprobs"]
            message = f"Requested sample logprobs of {k}, which is greater than max allowed: 20"
            return JSONResponse({"error": {"message": message, "code": 400}}, status_code=400)
        step = {"tokens": ["token_id:5"], "top_logprobs": [{"token_id:5": 1.0}]}
        chunk = {"choices": [{"text": "hi", "logprobs": step, "finish_reason": "length"}]}

        async def events() -> AsyncIterator[bytes]:
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture
def server() -> Iterator[tuple[str, list[int]]]:
    asked: list[int] = []
    port = free_port()
    config = uvicorn.Config(capped_vllm(asked), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    assert wait_for(lambda: srv.started, 30)
    yield f"http://127.0.0.1:{port}", asked
    srv.should_exit = True
    thread.join(10)


def test_a_capped_vllm_turns_traffic_sampling_off_and_serves(server: tuple[str, list[int]]) -> None:
    url, asked = server
    engine = small_engine(url, sample_share=1.0)
    req = GenerationRequest((1, 2, 3), 1, RowSpec(1.0, (5, 6)))

    async def run() -> list[GenerationDone]:
        await engine.start()
        try:
            deadline = time.monotonic() + 30
            while not engine.backend.ready and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            done = []
            for _ in range(2):
                stream = await engine.submit(req)
                events = [e async for e in stream]
                await stream.aclose()
                assert isinstance(events[-1], GenerationDone)
                done.append(events[-1])
            return done
        finally:
            await engine.stop()

    first, second = asyncio.run(run())
    assert asked == [GENERATION_TOP, 1, 1]  # refused once, then never asked again
    assert first.text == second.text == "hi" and first.clean_sample is None
    assert (first.fidelity.agree, first.fidelity.steps) == (1, 1)
