"""A dynamic batcher: rows of all tenants are gathered into one forward pass and answered one by one.

Contract:
- `submit(rows)` enqueues a request's rows atomically or refuses at once with `Unavailable`
  (code ``overloaded``) when the bounded queue cannot take them: a request is never left to time out.
- The worker waits for the first row, then gathers more until ``max_batch_size`` rows or ``max_wait_s``
  have passed, and runs ``run_batch`` in a dedicated thread so the event loop keeps serving.
- A row whose caller went away (its future was cancelled: client disconnect) is dropped before the
  forward pass, so the model spends no time on it.
- ``run_batch`` returns one result per row, in order; an exception fails every row of that batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.errors import Unavailable

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Row(Generic[T, R]):
    payload: T
    future: asyncio.Future[R]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one batch cost: its size, each row's queue wait and the forward pass, in seconds."""

    size: int
    waits: list[float]
    payloads: Sequence[object]
    run_seconds: float


class DynamicBatcher(Generic[T, R]):
    """Gathers rows into batches for ``run_batch(payloads) -> results`` (called in a worker thread)."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], list[R]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(
                f"max_batch_size ({max_batch_size}) and max_queue ({max_queue}) must be >= 1, "
                f"max_wait_s ({max_wait_s}) >= 0"
            )
        self._run_batch = run_batch
        self._max_batch = max_batch_size
        self._max_wait = max_wait_s
        self._max_queue = max_queue
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Row[T, R]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aim-forward")
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Rows waiting for a batch."""
        return self._queue.qsize()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="aim-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            row = self._queue.get_nowait()
            if not row.future.done():
                row.future.set_exception(Unavailable("the service is shutting down", code="shutting_down"))
        self._executor.shutdown(wait=True)

    async def submit(self, payloads: Sequence[T]) -> list[R]:
        """Run ``payloads`` as rows of upcoming batches; results in the same order."""
        if self._task is None:
            raise Unavailable("the model is not serving yet", code="not_ready", retry_after=1)
        if self._queue.qsize() + len(payloads) > self._max_queue:
            raise Unavailable(
                f"the request queue is full ({self._max_queue} rows); retry shortly",
                code="overloaded",
                retry_after=1,
            )
        loop = asyncio.get_running_loop()
        rows = [_Row[T, R](p, loop.create_future()) for p in payloads]
        for row in rows:
            self._queue.put_nowait(row)
        try:
            if len(rows) == 1:
                return [await rows[0].future]
            return list(await asyncio.gather(*(r.future for r in rows)))
        except asyncio.CancelledError:
            for row in rows:
                row.future.cancel()
            raise

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            rows = await self._gather()
            if not rows:
                continue
            start = time.perf_counter()
            waits = [start - r.enqueued for r in rows]
            payloads = [r.payload for r in rows]
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, payloads)
            except Exception as exc:  # one failure fails this batch's rows, not the worker
                for row in rows:
                    if not row.future.done():
                        row.future.set_exception(exc)
                continue
            if self._on_batch is not None:
                self._on_batch(BatchStats(len(rows), waits, payloads, time.perf_counter() - start))
            for row, result in zip(rows, results, strict=True):
                if not row.future.done():
                    row.future.set_result(result)

    async def _gather(self) -> list[_Row[T, R]]:
        first = await self._queue.get()
        rows = [first]
        deadline = time.perf_counter() + self._max_wait
        while len(rows) < self._max_batch:
            # Rows already queued are taken without awaiting: an await per row costs more than the
            # forward pass of a small model.
            while len(rows) < self._max_batch and not self._queue.empty():
                rows.append(self._queue.get_nowait())
            timeout = deadline - time.perf_counter()
            if len(rows) >= self._max_batch or timeout <= 0:
                break
            try:
                rows.append(await asyncio.wait_for(self._queue.get(), timeout))
            except TimeoutError:
                break
        return [r for r in rows if not r.future.cancelled()]
