"""OpenAI-compatible routes, so the official `openai` client works with ``base_url=<service>/v1``.

Only what the service can honour is accepted: one choice (``n`` = 1), no logprobs or tools. σ and noise
keys come from the tenant's tier as everywhere else; ``temperature`` defaults to 1 as in the OpenAI API,
and sampling is keyed, so the same request gives the same completion.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from service.api.common import require_task
from service.api.components import Components
from service.api.deps import Caller, CallerDep, ComponentsDep
from service.api.generate import Decoding, build_request, collect, sse
from service.serving.generation import GenerationEvent, encode_chat, encode_prompt

router = APIRouter(prefix="/v1", tags=["openai"])


class _OpenAIBody(BaseModel):
    model_config = ConfigDict(extra="ignore")  # unknown OpenAI fields (user, seed, ...) are ignored

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1024)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    stream: bool = False
    n: Literal[1] = 1

    def decoding(self, default_max: int = 16) -> Decoding:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return Decoding(self.max_tokens or default_max, self.temperature, self.top_p, stop[:8])


class CompletionRequest(_OpenAIBody):
    prompt: str = Field(min_length=1)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(_OpenAIBody):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1024)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _stream(c: Components, caller: Caller, gen: Any, frame: Any) -> StreamingResponse:
    return StreamingResponse(sse(c, caller, gen, frame), media_type="text/event-stream")


@router.get("/models")
async def models(_: CallerDep, c: ComponentsDep) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": c.model.name, "object": "model", "created": 0, "owned_by": "aimserve"}],
    }


@router.post("/completions")
async def completions(body: CompletionRequest, caller: CallerDep, c: ComponentsDep) -> Any:
    require_task(c, "text-generation")
    prompt = encode_prompt(c.model.tokenizer, body.prompt)
    gen = build_request(c, caller, prompt, body.decoding())
    head = {
        "id": "cmpl-" + secrets.token_hex(12),
        "object": "text_completion",
        "created": int(time.time()),
        "model": c.model.name,
    }
    if body.stream:

        def frame(e: GenerationEvent) -> dict[str, Any]:
            choice = {
                "index": 0,
                "text": e.text,
                "logprobs": None,
                "finish_reason": e.finish_reason if e.finished else None,
            }
            return {**head, "choices": [choice]}

        return _stream(c, caller, gen, frame)
    out = await collect(c, caller, gen)
    choice = {"index": 0, "text": out.text, "logprobs": None, "finish_reason": out.finish_reason}
    return {**head, "choices": [choice], "usage": _usage(out.prompt_tokens, out.completion_tokens)}


@router.post("/chat/completions")
async def chat(body: ChatRequest, caller: CallerDep, c: ComponentsDep) -> Any:
    require_task(c, "text-generation")
    prompt = encode_chat(c.model.tokenizer, [m.model_dump() for m in body.messages])
    decoding = body.decoding()
    if body.max_completion_tokens is not None:
        decoding = Decoding(body.max_completion_tokens, decoding.temperature, decoding.top_p, decoding.stop)
    gen = build_request(c, caller, prompt, decoding)
    head = {"id": "chatcmpl-" + secrets.token_hex(12), "created": int(time.time()), "model": c.model.name}
    if body.stream:
        started = False

        def frame(e: GenerationEvent) -> dict[str, Any]:
            nonlocal started
            delta: dict[str, str] = {} if started else {"role": "assistant"}
            started = True
            if e.text:
                delta["content"] = e.text
            choice = {"index": 0, "delta": delta, "finish_reason": e.finish_reason if e.finished else None}
            return {**head, "object": "chat.completion.chunk", "choices": [choice]}

        return _stream(c, caller, gen, frame)
    out = await collect(c, caller, gen)
    message = {"role": "assistant", "content": out.text}
    return {
        **head,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": out.finish_reason}],
        "usage": _usage(out.prompt_tokens, out.completion_tokens),
    }
