"""Glue between the HTTP routes and the generation engine: request building, collection, SSE framing.

The noise key of a generation is bound to (secret, tenant, digest of the prompt tokens and the decoding
settings), so the same tenant asking the same thing gets the same text, token for token.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from service.api.common import envelope
from service.api.components import Components
from service.api.deps import Caller
from service.api.policy import row_spec
from service.errors import AimError
from service.modulation import input_digest
from service.serving.generation import (
    GenerationEngine,
    GenerationEvent,
    GenerationRequest,
    encode_prompt,
)


@dataclass(frozen=True, slots=True)
class Decoding:
    max_new_tokens: int
    temperature: float
    top_p: float | None
    stop: list[str]


@dataclass(slots=True)
class Outcome:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def engine(c: Components) -> GenerationEngine:
    assert c.generator is not None  # require_task("text-generation") ran first
    return c.generator


def build_request(c: Components, caller: Caller, prompt_ids: list[int], d: Decoding) -> GenerationRequest:
    digest = input_digest(
        struct.pack(f"<{len(prompt_ids)}I", *prompt_ids),
        json.dumps([d.temperature, d.top_p, d.stop]).encode(),
    )
    spec = row_spec(c.settings.secret, caller.tenant.id, digest, caller.tier.sigma, caller.focus)
    return GenerationRequest(
        prompt_ids=prompt_ids,
        max_new_tokens=d.max_new_tokens,
        temperature=d.temperature,
        top_p=d.top_p,
        stop=d.stop,
        spec=spec,
    )


async def events(c: Components, caller: Caller, req: GenerationRequest) -> AsyncIterator[GenerationEvent]:
    """The engine's events, with tokens, time to first token, inter-token latency and fidelity counted."""
    tier = caller.tier.name
    start = last = time.perf_counter()
    first = True
    async for event in engine(c).submit(req):
        now = time.perf_counter()
        if event.tokens:
            if first:
                c.metrics.observe_ttft(tier, now - start)
                first = False
            else:
                c.metrics.observe_inter_token(tier, (now - last) / event.tokens)
            c.metrics.observe_tokens(tier, event.tokens)
            last = now
        if event.finished:
            c.metrics.count_fidelity(tier, event.fidelity_matches, event.fidelity_steps)
        yield event


async def collect(c: Components, caller: Caller, req: GenerationRequest) -> Outcome:
    parts: list[str] = []
    reason, prompt_tokens, completion_tokens = "length", len(req.prompt_ids), 0
    async for event in events(c, caller, req):
        parts.append(event.text)
        if event.finished:
            reason = event.finish_reason or "stop"
            completion_tokens = event.completion_tokens
    return Outcome("".join(parts), reason, prompt_tokens, completion_tokens)


async def sse(
    c: Components,
    caller: Caller,
    req: GenerationRequest,
    frame: Callable[[GenerationEvent], dict[str, Any] | None],
) -> AsyncIterator[bytes]:
    """Server-sent events: one ``data:`` line per frame, an error frame on failure, then ``[DONE]``."""
    try:
        async for event in events(c, caller, req):
            payload = frame(event)
            if payload is not None:
                yield b"data: " + json.dumps(payload).encode() + b"\n\n"
    except AimError as exc:
        body = {"error": {"code": exc.code, "message": exc.message}}
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


async def generate_once(c: Components, caller: Caller, body: Any, request_id: str) -> dict[str, Any]:
    prompt = encode_prompt(c.model.tokenizer, body.prompt)
    req = build_request(c, caller, prompt, Decoding(body.max_new_tokens, body.temperature, None, body.stop))
    out = await collect(c, caller, req)
    return {
        **envelope(c, caller, request_id),
        "text": out.text,
        "finish_reason": out.finish_reason,
        "usage": {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens},
    }


def generate_stream(c: Components, caller: Caller, body: Any, request_id: str) -> AsyncIterator[bytes]:
    prompt = encode_prompt(c.model.tokenizer, body.prompt)
    req = build_request(c, caller, prompt, Decoding(body.max_new_tokens, body.temperature, None, body.stop))
    head = envelope(c, caller, request_id)

    def frame(event: GenerationEvent) -> dict[str, Any]:
        out: dict[str, Any] = {**head, "text": event.text}
        if event.finished:
            out["finish_reason"] = event.finish_reason
            out["usage"] = {"prompt_tokens": len(prompt), "completion_tokens": event.completion_tokens}
        return out

    return sse(c, caller, req, frame)
