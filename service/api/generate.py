"""Glue between the HTTP routes and the generation engine: request building, collection, SSE framing.

The noise of a generation is keyed by (secret, tier) and the prompt as the model represents it (the
engine hashes the clean first-step logits: `service.modulation.semantic.prompt_codes`), so every tenant
of a tier asking the same thing gets the same text, token for token, and no decoding field (stop strings,
max tokens, stream, temperature, top-p) picks another draw. A request is
admitted (validated and queued, or refused with 4xx/503) before any streaming response starts, so
errors keep their HTTP status.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse

from service.api.admission import until_disconnect
from service.api.common import envelope
from service.api.deps import Caller, EngineDep, MetricsDep, ModelDep, SettingsDep, TrafficDep
from service.api.policy import row_spec
from service.errors import AimError
from service.metrics import Metrics
from service.models import LoadedModel
from service.modulation.keys import derive_projection_key
from service.serving.generation import (
    EventStream,
    GenerationDone,
    GenerationEngine,
    GenerationEvent,
    GenerationRequest,
    encode_prompt,
)
from service.serving.traffic import TrafficSample
from service.settings import Settings

Frame = Callable[[GenerationEvent], dict[str, Any] | None]
#: OpenAPI: a generation route answers JSON, or server-sent events when the body asks ``stream: true``;
#: before OpenAPI 3.2 the media type's schema describes one event: its ``data`` is a JSON frame or ``[DONE]``.
STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/event-stream": {
                "schema": {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}
            }
        }
    }
}


@dataclass(frozen=True, slots=True)
class Generation:
    """What a generation route uses, each collaborator from its own dependency: the engine, the model
    (tokenizer, name), the settings (the secret keying the noise) and where served outputs are counted."""

    engine: GenerationEngine
    model: LoadedModel
    settings: Settings
    metrics: Metrics
    traffic: TrafficSample


async def get_generation(
    engine: EngineDep, model: ModelDep, settings: SettingsDep, metrics: MetricsDep, traffic: TrafficDep
) -> Generation:
    """404 ``unsupported_task`` (from `EngineDep`) when the loaded model does not generate text."""
    return Generation(engine, model, settings, metrics, traffic)


GenerationDep = Annotated[Generation, Depends(get_generation)]


@dataclass(frozen=True, slots=True)
class Decoding:
    max_new_tokens: int
    temperature: float
    top_p: float | None
    stop: list[str]


def build_request(
    c: Generation, caller: Caller, prompt_ids: tuple[int, ...], d: Decoding
) -> GenerationRequest:
    spec = row_spec(c.settings.secret, caller.tier.name, caller.tier.sigma, caller.focus)
    projection = derive_projection_key(c.settings.secret)
    return GenerationRequest(
        prompt_ids,
        d.max_new_tokens,
        spec,
        d.temperature,
        d.top_p,
        tuple(d.stop),
        projection,
        priority=caller.tier.priority,
        tenant=caller.tenant.id,
    )


async def admit(c: Generation, req: GenerationRequest) -> EventStream:
    """Validate and queue ``req`` (BadInput / PayloadTooLarge / Unavailable raise here)."""
    return await c.engine.submit(req)


async def observed(c: Generation, caller: Caller, stream: EventStream) -> AsyncIterator[GenerationEvent]:
    """The stream's events, with time to first token, inter-token latency, tokens and fidelity counted."""
    tier = caller.tier.name
    start = last = time.perf_counter()
    first = True
    try:
        async for event in stream:
            now = time.perf_counter()
            if isinstance(event, GenerationDone):
                c.metrics.observe_tokens(tier, event.usage.completion_tokens)
                c.metrics.count_fidelity(tier, event.fidelity.agree, event.fidelity.steps)
                c.metrics.observe_queue_wait(tier, event.queue_wait_s)
                if event.clean_sample is not None:
                    c.traffic.add(tier, caller.tenant.id, event.clean_sample)
            elif first:
                c.metrics.observe_ttft(tier, now - start)
                first = False
            else:
                c.metrics.observe_inter_token(tier, now - last)
            last = now
            yield event
    finally:
        await stream.aclose()


async def collect(c: Generation, caller: Caller, stream: EventStream) -> GenerationDone:
    async for event in observed(c, caller, stream):
        if isinstance(event, GenerationDone):
            return event
    raise AimError("the generation ended without a result")


def sse(c: Generation, caller: Caller, stream: EventStream, frame: Frame) -> StreamingResponse:
    """Server-sent events: one ``data:`` line per frame, an error frame on failure, then ``[DONE]``."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in observed(c, caller, stream):
                payload = frame(event)
                if payload is not None:
                    yield b"data: " + json.dumps(payload).encode() + b"\n\n"
        except AimError as exc:
            error = {"error": {"code": exc.code, "message": exc.message}}
            yield b"data: " + json.dumps(error).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


async def generate(c: Generation, caller: Caller, body: Any, request_id: str, request: Request) -> Any:
    """POST /v1/generate: the whole text, or SSE frames of text deltas then the finish and usage."""
    prompt = encode_prompt(c.model.tokenizer, body.prompt)
    decoding = Decoding(body.max_new_tokens, body.temperature, None, body.stop)
    stream = await admit(c, build_request(c, caller, prompt, decoding))
    head = envelope(c.model, caller, request_id)
    if not body.stream:
        done = await until_disconnect(request, collect(c, caller, stream))
        return {
            **head,
            "text": done.text,
            "finish_reason": done.finish_reason,
            "usage": {
                "prompt_tokens": done.usage.prompt_tokens,
                "completion_tokens": done.usage.completion_tokens,
            },
        }

    def frame(event: GenerationEvent) -> dict[str, Any]:
        if isinstance(event, GenerationDone):
            usage = {
                "prompt_tokens": event.usage.prompt_tokens,
                "completion_tokens": event.usage.completion_tokens,
            }
            return {**head, "text": "", "finish_reason": event.finish_reason, "usage": usage}
        return {**head, "text": event.text}

    return sse(c, caller, stream, frame)
