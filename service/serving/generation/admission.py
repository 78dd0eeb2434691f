"""Generation admission for every engine, at the seam: the compute budget and the per-tenant stream cap.

`Admitted` wraps any `GenerationEngine` (built-in or vLLM) and decides before the engine sees a request:

- **Compute budget.** A request costs its prompt tokens plus ``max_new_tokens`` (the most it may decode);
  above ``max_request_tokens`` (``AIM_MAX_REQUEST_TOKENS``, the same per-request budget as a
  classification request's tokens) it is a 413 ``request_too_costly`` naming the limit and the setting,
  at once: one request cannot hold a batch slot for thousands of steps.
- **Streams in flight per tenant.** Each completion is one row of the tenant's `InFlight` (the batcher's
  own per-tenant count, capped by ``AIM_TENANT_MAX_ROWS``), held from admission until its stream ends,
  fails or is closed; one more is a 429 ``too_many_in_flight`` with Retry-After, so one tenant cannot
  take every batch slot and queue place.

What the engine decides is unchanged: a full queue is a 503 ``overloaded``; waiting requests join the
running batch highest priority first (the built-in worker's queue, vLLM's priority scheduler).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from service.serving.admission import InFlight, too_costly
from service.serving.generation.interface import EngineStats, EventStream, GenerationEngine
from service.serving.generation.types import GenerationDone, GenerationEvent, GenerationRequest

#: Retry-After of a 429 ``too_many_in_flight``: a stream's length is unknown, so the shortest hint.
IN_FLIGHT_RETRY_AFTER_S = 1.0
#: The setting that states ``max_request_tokens`` (named in the 413).
BUDGET_SETTING = "AIM_MAX_REQUEST_TOKENS"


class Admitted:
    """``engine`` behind the compute budget and the per-tenant cap (``tenant_max_rows`` None: no cap)."""

    def __init__(
        self, engine: GenerationEngine, *, max_request_tokens: int, tenant_max_rows: int | None
    ) -> None:
        if max_request_tokens < 1:
            raise ValueError(f"max_request_tokens must be >= 1, got {max_request_tokens}")
        self.engine = engine
        self.max_request_tokens = max_request_tokens
        self.tenants = InFlight(tenant_max_rows, unit="streams")

    @property
    def context_length(self) -> int:
        return self.engine.context_length

    @property
    def queue_depth(self) -> int:
        return self.engine.queue_depth

    def stats(self) -> EngineStats:
        return self.engine.stats()

    async def start(self) -> None:
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()

    def end_all(self) -> None:
        self.engine.end_all()

    def check(self, req: GenerationRequest) -> None:
        """PayloadTooLarge (413 ``request_too_costly``) or RateLimited (429 ``too_many_in_flight``)."""
        cost = len(req.prompt_ids) + req.max_new_tokens
        if cost > self.max_request_tokens:
            hint = "shorten the prompt or ask for fewer new tokens (max_new_tokens, max_tokens)"
            raise too_costly(cost, self.max_request_tokens, "tokens", BUDGET_SETTING, hint)
        self.tenants.check(req.tenant, 1, IN_FLIGHT_RETRY_AFTER_S)

    async def submit(self, req: GenerationRequest) -> EventStream:
        self.check(req)
        self.tenants.add(req.tenant, 1)
        try:
            stream = await self.engine.submit(req)
        except BaseException:
            self.tenants.release(req.tenant, 1)
            raise
        return _Held(stream, lambda: self.tenants.release(req.tenant, 1))


class _Held:
    """``stream``, holding its tenant's row until the final event, an error, ``aclose`` or collection."""

    def __init__(self, stream: EventStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self

    async def __anext__(self) -> GenerationEvent:
        try:
            event = await self._stream.__anext__()
        except BaseException:
            self._let_go()
            raise
        if isinstance(event, GenerationDone):
            self._let_go()
        return event

    async def aclose(self) -> None:
        self._let_go()
        await self._stream.aclose()

    def _let_go(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __del__(self) -> None:
        # A stream dropped without being closed (the engine cancels its row the same way).
        self._let_go()
