"""OpenAI-compatible routes, so the official `openai` client works with ``base_url=<service>/v1``.

Only what the service can honour is accepted: one choice (``n`` = 1), no logprobs or tools. σ and noise
keys come from the tenant's tier as everywhere else; ``temperature`` defaults to 1 as in the OpenAI API,
and sampling is keyed, so the same request gives the same completion.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from service.api.admission import until_disconnect
from service.api.deps import CallerDep, ModelDep
from service.api.errors import error_responses
from service.api.generate import STREAM_RESPONSE, Decoding, GenerationDep, admit, build_request, collect, sse
from service.api.schemas import StopList, StopText, Text, TokenCount
from service.limits import MAX_CHAT_MESSAGES, MAX_TEMPERATURE
from service.serving.generation import GenerationDone, GenerationEvent, encode_chat, encode_prompt

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(401, 429, 503))
_GENERATION = {**error_responses(400, 404, 413, 422), **STREAM_RESPONSE}


class _OpenAIBody(BaseModel):
    # Unknown OpenAI fields (user, seed, ...) are ignored; known ones are typed strictly.
    model_config = ConfigDict(extra="ignore", strict=True)

    model: Text | None = None
    max_tokens: TokenCount | None = None
    temperature: float = Field(default=1.0, ge=0.0, le=MAX_TEMPERATURE)
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    stop: StopText | StopList | None = None
    stream: bool = False
    n: Literal[1] = 1

    def decoding(self, max_tokens: int | None = None) -> Decoding:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return Decoding(max_tokens or self.max_tokens or 16, self.temperature, self.top_p, stop)


class CompletionRequest(_OpenAIBody):
    prompt: Text = Field(min_length=1)


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    role: Literal["system", "user", "assistant"]
    content: Text


class ChatRequest(_OpenAIBody):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_CHAT_MESSAGES)
    max_completion_tokens: TokenCount | None = None


def _usage(done: GenerationDone) -> dict[str, int]:
    p, n = done.usage.prompt_tokens, done.usage.completion_tokens
    return {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}


def _head(prefix: str, model: str) -> dict[str, Any]:
    return {"id": prefix + secrets.token_hex(12), "created": int(time.time()), "model": model}


@router.get("/models")
async def models(_: CallerDep, model: ModelDep) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model.name, "object": "model", "created": 0, "owned_by": "aimserve"}],
    }


@router.post("/completions", responses=_GENERATION)
async def completions(request: Request, body: CompletionRequest, caller: CallerDep, g: GenerationDep) -> Any:
    prompt = encode_prompt(g.model.tokenizer, body.prompt)
    stream = await admit(g, build_request(g, caller, prompt, body.decoding()))
    head = {**_head("cmpl-", g.model.name), "object": "text_completion"}
    if body.stream:

        def frame(e: GenerationEvent) -> dict[str, Any]:
            text, reason = ("", e.finish_reason) if isinstance(e, GenerationDone) else (e.text, None)
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
            return {**head, "choices": [choice]}

        return sse(g, caller, stream, frame)
    out = await until_disconnect(request, collect(g, caller, stream))
    choice = {"index": 0, "text": out.text, "logprobs": None, "finish_reason": out.finish_reason}
    return {**head, "choices": [choice], "usage": _usage(out)}


@router.post("/chat/completions", responses=_GENERATION)
async def chat(request: Request, body: ChatRequest, caller: CallerDep, g: GenerationDep) -> Any:
    prompt = encode_chat(g.model.tokenizer, [m.model_dump() for m in body.messages])
    decoding = body.decoding(body.max_completion_tokens)
    stream = await admit(g, build_request(g, caller, prompt, decoding))
    head = _head("chatcmpl-", g.model.name)
    if body.stream:
        started = False

        def frame(e: GenerationEvent) -> dict[str, Any]:
            nonlocal started
            delta: dict[str, str] = {} if started else {"role": "assistant"}
            started = True
            reason = None
            if isinstance(e, GenerationDone):
                reason = e.finish_reason
            else:
                delta["content"] = e.text
            choice = {"index": 0, "delta": delta, "finish_reason": reason}
            return {**head, "object": "chat.completion.chunk", "choices": [choice]}

        return sse(g, caller, stream, frame)
    out = await until_disconnect(request, collect(g, caller, stream))
    message = {"role": "assistant", "content": out.text}
    return {
        **head,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": out.finish_reason}],
        "usage": _usage(out),
    }
