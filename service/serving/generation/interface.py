"""The seam between the web layer and whatever decodes: the generation-engine interface.

The web layer builds one `GenerationRequest` per completion (prompt token ids, decoding settings and the
row's `RowSpec`, decided by `service.api.policy` and never taken apart) and talks to an engine only
through `GenerationEngine`. Two implementations exist, chosen at start-up by ``AIM_ENGINE`` /
``aimserve serve --engine``:

- ``builtin``: `service.serving.generation.engine.BuiltinEngine`, transformers in this process;
- ``vllm``: `service.serving.generation.vllm.engine.VllmEngine`, a vLLM server (a supervised child
  process or ``AIM_VLLM_URL``) whose sampler applies the same modulation through our logits processor.

Both give a request the same modulation noise for the same key and decoding position.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from service.serving.generation.types import GenerationEvent, GenerationRequest


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot for /readyz and the metrics.

    ready: new requests can be served now (False while a vLLM child starts or restarts).
    queue_depth: requests waiting for a batch slot; running: requests being decoded.
    restarts: times the engine's backend was restarted after a failure (0 for the built-in engine).
    """

    engine: str  # one of `service.settings.ENGINES` (not imported: this package also runs inside vLLM)
    ready: bool
    queue_depth: int
    running: int
    restarts: int = 0


class EventStream(Protocol):
    """One request's events: `TokenDelta`s, then exactly one `GenerationDone`.

    Iterating raises the request's `AimError` (e.g. `Unavailable`) when the engine fails or stops before
    the row finishes. ``aclose`` (or cancelling the task that iterates) frees the row.
    """

    def __aiter__(self) -> AsyncIterator[GenerationEvent]: ...

    async def __anext__(self) -> GenerationEvent: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class GenerationEngine(Protocol):
    """What the web layer needs from a text-generation engine."""

    @property
    def context_length(self) -> int:
        """Tokens the model attends to: prompt plus completion."""
        ...

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch slot."""
        ...

    def stats(self) -> EngineStats: ...

    async def start(self) -> None:
        """Start serving (idempotent); may return before a remote backend is ready (see ``stats``)."""
        ...

    async def stop(self) -> None:
        """Fail unfinished requests with 503 and release everything (idempotent)."""
        ...

    def end_all(self) -> None:
        """End every running and waiting request with 503 ``shutting_down`` at the next step and keep
        serving (called when the shutdown grace period is over: streams then close with that error event)."""
        ...

    async def submit(self, req: GenerationRequest) -> EventStream:
        """Validate and enqueue one request; returns its event stream.

        Raises (before any event, so the route answers with the right status):
            BadInput / PayloadTooLarge: an unusable request.
            Unavailable: not running, not ready, or the queue is full (code ``overloaded``).
        """
        ...
