"""The built-in generation engine: transformers in this process, one `GenerationEngine` implementation.

    engine = BuiltinEngine(model, tokenizer, device=..., max_batch_size=8, max_wait_ms=10, max_queue=64)
    await engine.start()
    stream = await engine.submit(GenerationRequest(prompt_ids=..., max_new_tokens=64, spec=row_spec))
    async for event in stream:       # TokenDelta ..., then one GenerationDone
        ...
    await engine.stop()

Every decoding step of every row is modulated with the row's `RowSpec` at the row's own step index, then
decoded greedily or sampled with keyed randomness, so one tenant's same request gives the same text every
time. Requests are validated once, here, at submit; a full queue refuses at once (503 ``overloaded``); a
consumer that stops iterating (closes the stream, is cancelled, or drops it) frees its row at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import torch

from service.errors import AimError, ConfigError, Unavailable
from service.serving.generation.batch import cache_is_mergeable
from service.serving.generation.interface import EngineStats
from service.serving.generation.row import Row
from service.serving.generation.text import StreamText
from service.serving.generation.types import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    StepStats,
    validate_request,
)
from service.serving.generation.worker import Worker, WorkerConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["BuiltinEngine", "GenerationStream", "collect", "eos_ids"]

OVERLOAD_RETRY_AFTER_S = 1.0
_Item = GenerationEvent | BaseException


class GenerationStream(AsyncIterator[GenerationEvent]):
    """The events of one request: `TokenDelta`s, then exactly one `GenerationDone`.

    Raises the request's `AimError` if the engine fails or stops before the row finishes. Closing it
    (``aclose``), cancelling the task that awaits it, or dropping it cancels the row.
    """

    def __init__(self, row: Row, queue: asyncio.Queue[_Item], cancel: Callable[[Row], None]) -> None:
        self._row = row
        self._queue = queue
        self._cancel = cancel
        self._done = False

    def __aiter__(self) -> GenerationStream:
        return self

    async def __anext__(self) -> GenerationEvent:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._queue.get()
        except asyncio.CancelledError:
            self._close()
            raise
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if isinstance(item, GenerationDone):
            self._done = True
        return item

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        if not self._done:
            self._done = True
            self._cancel(self._row)

    def __del__(self) -> None:
        # Only a flag write: safe from any thread and at interpreter shutdown.
        if not self._done:
            self._row.cancelled = True


class BuiltinEngine:
    """Batched, modulated decoding of one causal LM on a dedicated worker thread.

    Args:
        model: a transformers causal LM already on ``device`` and in eval mode.
        tokenizer: its tokenizer; the engine decodes with a private copy (the caller encodes prompts).
        device: where the model lives.
        max_batch_size: rows decoded together (>= 1).
        max_wait_ms: how long an idle engine waits, after a request arrives, for others to join it (>= 0).
        max_queue: requests that may wait for a batch slot beyond the free slots of the running batch;
            one more is refused with 503 (>= 1). Admission fills the batch first, whatever this is.
        metrics_hook: called with `StepStats` after every step, from the worker thread; must be cheap.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        device: torch.device | str,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        metrics_hook: Callable[[StepStats], None] | None = None,
    ) -> None:
        _check_setting("max_batch_size", max_batch_size, max_batch_size >= 1)
        _check_setting("max_wait_ms", max_wait_ms, 0.0 <= max_wait_ms <= 60_000.0)
        _check_setting("max_queue", max_queue, max_queue >= 1)
        config = model.config.get_text_config(decoder=True)
        self.context_length = int(getattr(config, "max_position_embeddings", 0) or 0)
        _check_setting("max_position_embeddings", self.context_length, self.context_length > 1)
        self.vocab_size = int(config.vocab_size)
        eos = eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0)
        # The worker decodes with its own copy: a tokenizer shared across threads can fail with
        # "Already borrowed" when one thread changes its padding/truncation state mid-call.
        self._decoder = copy.deepcopy(tokenizer)
        self._max_queue = max_queue
        cfg = WorkerConfig(
            device=torch.device(device),
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_ms / 1000.0,
            eos_ids=eos,
            pad_id=int(pad),
            vocab_size=self.vocab_size,
            mergeable=cache_is_mergeable(model),
        )
        self.continuous_batching = cfg.mergeable
        self._worker = Worker(model, cfg, self._deliver, metrics_hook)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch slot."""
        return len(self._worker.waiting)

    def stats(self) -> EngineStats:
        running = self._thread is not None
        return EngineStats("builtin", running, self.queue_depth, self._worker.running)

    async def start(self) -> None:
        """Start the worker thread; events are delivered on the calling event loop."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._worker.arm()
        self._thread = threading.Thread(target=self._worker.run, name="aim-generation", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Finish the current step, fail every unfinished request with 503, and join the worker."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._worker.stop()
        await asyncio.to_thread(thread.join)

    async def submit(self, req: GenerationRequest) -> GenerationStream:
        """Validate and enqueue one request; returns its event stream.

        Raises:
            BadInput / PayloadTooLarge: an unusable request (see `validate_request`).
            Unavailable: the engine is not running, or the queue is full (code ``overloaded``).
        """
        loop = self._loop
        if loop is None or self._thread is None:
            raise Unavailable("the generation engine is not running")
        validate_request(req, context_length=self.context_length, vocab_size=self.vocab_size)
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        row = Row(req, queue, StreamText(self._decoder, req.stop))
        with self._worker.cond:
            if len(self._worker.waiting) >= self._max_queue + self._worker.free_slots:
                raise Unavailable(
                    f"the generation queue is full ({self._max_queue} requests waiting); retry shortly",
                    code="overloaded",
                    retry_after=OVERLOAD_RETRY_AFTER_S,
                )
            self._worker.enqueue(row)
        return GenerationStream(row, queue, self._cancel)

    def end_all(self) -> None:
        """End every running and waiting request with 503 ``shutting_down`` at the next step (the grace
        period after SIGTERM is over); streams then close with that error event, never mid-body."""
        self._worker.end_all()

    def _deliver(self, items: list[tuple[Row, _Item]]) -> None:
        """From the worker thread: one loop wake-up per step for all of the step's events."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
                loop.call_soon_threadsafe(_put_all, items)

    def _cancel(self, row: Row) -> None:
        row.cancelled = True
        with self._worker.cond:
            if row in self._worker.waiting:
                self._worker.waiting.remove(row)


async def collect(stream: AsyncIterator[GenerationEvent]) -> GenerationDone:
    """Drain a stream and return its final event (for non-streaming callers)."""
    async for event in stream:
        if isinstance(event, GenerationDone):
            return event
    raise AimError("the generation stream ended without a result")


def _put_all(items: list[tuple[Row, _Item]]) -> None:
    """On the event loop: hand each event to its consumer's queue."""
    for row, item in items:
        row.outbox.put_nowait(item)


def eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """End-of-sequence ids: the generation config's (what `generate` stops on) plus the tokenizer's."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, list | tuple):
        ids.update(int(i) for i in gen_eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _check_setting(name: str, value: object, ok: bool) -> None:
    if not ok:
        raise ConfigError(f"generation setting {name} has an unusable value: {value!r}")
