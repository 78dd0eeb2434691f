"""One vLLM completion stream as the engine's events, and the SSE/JSON helpers of the vLLM wire.

`VllmStream` turns vLLM's streamed completion chunks into `TokenDelta`s and one `GenerationDone` (with the
live fidelity and the traffic sample read from each step's raw top logits: `steps.StepReader`). A broken
connection or a stream silent past the client's read timeout ends it with `Unavailable` and marks the
backend suspect.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import httpx

from service.errors import Unavailable
from service.serving.generation.types import (
    Fidelity,
    FinishReason,
    GenerationDone,
    GenerationEvent,
    TokenDelta,
    Usage,
)
from service.serving.generation.vllm.steps import StepReader
from service.serving.generation.vllm.supervisor import Backend

RETRY_AFTER_S = 5.0


class VllmStream:
    """One vLLM completion stream as our events; ``aclose`` closes the connection (vLLM aborts the row)."""

    def __init__(
        self,
        backend: Backend,
        eos: frozenset[int],
        release: Callable[[VllmStream], None],
        response: httpx.Response,
        chunks: AsyncIterator[dict[str, Any]],
        first: dict[str, Any] | None,
        prompt: tuple[int, float],
        reader: StepReader,
    ) -> None:
        self._backend, self._eos, self._release = backend, eos, release
        self._response = response
        self._reader = reader
        self._events = self._run(chunks, first, prompt)
        self._closed = False
        self.ending = False

    def __aiter__(self) -> VllmStream:
        return self

    async def __anext__(self) -> GenerationEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._events.aclose()
            await self._response.aclose()
            self._release(self)

    async def _run(
        self, chunks: AsyncIterator[dict[str, Any]], first: dict[str, Any] | None, prompt: tuple[int, float]
    ) -> AsyncGenerator[GenerationEvent, None]:
        """``prompt``: (prompt tokens, seconds from sending to vLLM's first chunk, reported as the queue
        wait: vLLM's queueing plus its prefill, an upper bound of the wait itself)."""
        prompt_tokens, queue_wait_s = prompt
        text: list[str] = []
        tokens: list[int] = []
        steps = self._reader
        reason: FinishReason = "length"
        completion = 0
        try:
            async for chunk in _prepend(first, chunks):
                if self.ending:
                    raise Unavailable(
                        "the service is shutting down; retry on another replica", code="shutting_down"
                    )
                if "error" in chunk:
                    raise Unavailable(
                        f"the generation engine failed: {error_message(chunk)}", retry_after=RETRY_AFTER_S
                    )
                for choice in chunk.get("choices") or []:
                    tokens += [t for t in steps.read(choice.get("logprobs")) if t not in self._eos]
                    delta = choice.get("text") or ""
                    if delta:
                        text.append(delta)
                        yield TokenDelta(delta)
                    if choice.get("finish_reason"):
                        reason = "length" if choice["finish_reason"] == "length" else "stop"
                if chunk.get("usage"):
                    completion = int(chunk["usage"]["completion_tokens"])
        except (TimeoutError, httpx.HTTPError) as exc:
            self._backend.suspect()
            raise lost(exc) from None
        usage = Usage(prompt_tokens, completion or steps.steps)
        fidelity = Fidelity(steps.agree, steps.compared)
        yield GenerationDone(
            "".join(text), reason, usage, fidelity, tuple(tokens), queue_wait_s, steps.sample()
        )


async def _prepend(
    first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


async def chunks(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of an SSE body, up to ``[DONE]``."""
    async for line in response.aiter_lines():
        if not line.startswith("data: "):
            continue
        data = line[6:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


def error_message(raw: bytes | dict[str, Any]) -> str:
    try:
        body = json.loads(raw) if isinstance(raw, bytes) else raw
        err = body.get("error", body)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except (ValueError, AttributeError):
        return "no details"


def lost(exc: BaseException) -> Unavailable:
    return Unavailable(
        f"the generation engine (vLLM) stopped answering ({type(exc).__name__}); retry shortly",
        code="engine_unavailable",
        retry_after=RETRY_AFTER_S,
    )
