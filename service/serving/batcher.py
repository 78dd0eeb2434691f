"""A dynamic batcher: rows of all tenants are gathered into one forward pass and answered one by one.

Contract:
- Admission comes first and is cheap: ``admit(tenant, priority, rows)`` reserves queue room before the
  caller prepares (tokenizes, decodes) its inputs, or refuses at once (413, 429 or 503 with Retry-After:
  `service.serving.admission`); the expected wait is the batches of queued rows of the same or higher
  priority, plus the running one, x the measured batch time. No request times out in the queue.
- Rows are taken in `FairQueue` order: higher priority first, round-robin by row between tenants; one
  batch holds rows of one priority, at most ``max_batch_size`` rows whose summed cost is at most
  ``max_batch_cost`` (a single row always runs): no request holds the model longer than one such batch.
- **Sub-batches.** The worker is not preemptive: a row that arrives mid-batch waits for the running
  batch. So while a higher priority is active, a lower priority's batch is a small one (a fraction of
  ``max_batch_cost``: `Reservations.cost_room`); between two batches the highest priority queued goes
  first, and a lower batch is held back (up to ``max_wait_s``) while a higher tier's request prepares.
- An idle worker dispatches at once: it waits (up to ``max_wait_s``) only while an admitted request of
  the batch's priority is still preparing its rows. Rows that arrive during a forward pass form the
  next batch, which starts when the pass ends.
- A row whose caller went away (its future was cancelled: client disconnect) is dropped before the
  forward pass. ``run_batch`` runs in a dedicated thread and returns one result per row, in order; an
  exception fails every row of that batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.errors import Unavailable
from service.serving.admission import BatchLimits, Reservations
from service.serving.fairqueue import FairQueue

T = TypeVar("T")
R = TypeVar("R")

EWMA_WEIGHT = 0.2
"""Weight of the newest batch in the running estimate of the batch time used for admission."""


@dataclass(slots=True)
class _Row(Generic[T, R]):
    payload: T
    future: asyncio.Future[R]
    cost: float
    priority: int
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one batch cost: its size, each row's queue wait and the forward pass, in seconds."""

    size: int
    waits: list[float]
    payloads: Sequence[object]
    run_seconds: float


class Ticket(Generic[T, R]):
    """Queue room reserved for one request's rows; `run` them, or leave the ``admit`` block to release."""

    def __init__(self, batcher: DynamicBatcher[T, R], tenant: str, priority: int, rows: int) -> None:
        self._batcher, self.tenant, self.priority, self.rows = batcher, tenant, priority, rows
        self.open = True

    async def run(self, payloads: Sequence[T], costs: Sequence[float] | None = None) -> list[R]:
        """Queue ``payloads`` (at most the admitted rows) and return their results in order."""
        if not self.open or len(payloads) > self.rows:
            raise ValueError(f"a ticket for {self.rows} rows cannot run {len(payloads)} (or ran already)")
        return await self._batcher._run_ticket(self, payloads, costs or [1.0] * len(payloads))


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
        max_tenant_rows: int | None = None,
        max_batch_cost: float = math.inf,
        max_queue_wait_s: float = math.inf,
    ) -> None:
        self.limits = BatchLimits(
            max_batch_size, max_wait_s, max_queue, max_tenant_rows, max_batch_cost, max_queue_wait_s
        )
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._queue: FairQueue[_Row[T, R]] = FairQueue()
        self._arrived = asyncio.Event()
        self._book = Reservations(self.limits)
        self._batch_s = 0.0  # running estimate of one batch's time (0 until measured)
        self._running = False  # a forward pass is in progress
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aim-forward")
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Rows waiting for a batch (admitted ones still preparing included)."""
        return len(self._queue) + self._book.reserved.total()

    @property
    def batch_seconds(self) -> float:
        """The measured time of one batch (exponentially weighted), 0 before the first batch."""
        return self._batch_s

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="aim-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for row in self._queue.drain():
            if not row.future.done():
                row.future.set_exception(Unavailable("the service is shutting down", code="shutting_down"))
        self._executor.shutdown(wait=True)

    def expected_wait(self, priority: int) -> float:
        """Seconds before a new request of ``priority`` would reach the model, by the measured batch time
        (0 on an idle worker: an idle server never refuses by expected wait)."""
        ahead = self._queue.ahead_of(priority) + self._book.reserved_from(priority)
        batches = math.ceil(ahead / self.limits.max_batch_size) + (1 if self._running else 0)
        return batches * self._batch_s

    @contextlib.asynccontextmanager
    async def admit(self, tenant: str, priority: int, rows: int) -> AsyncIterator[Ticket[T, R]]:
        """Reserve room for ``rows`` rows of ``tenant`` or refuse at once (see the module docstring)."""
        if self._task is None:
            raise Unavailable("the model is not serving yet", code="not_ready", retry_after=1)
        self._book.reserve(tenant, priority, rows, self.depth, self.expected_wait(priority))
        ticket = Ticket(self, tenant, priority, rows)
        try:
            yield ticket
        finally:
            if ticket.open:  # never ran: give the room back
                ticket.open = False
                self._book.settle(tenant, priority, rows, queued=0)
                self._arrived.set()  # a waiting worker need not wait for this request any more

    async def submit(self, payloads: Sequence[T], tenant: str = "", priority: int = 0) -> list[R]:
        """Admit and run ``payloads`` in one call (callers with nothing to prepare)."""
        async with self.admit(tenant, priority, len(payloads)) as ticket:
            return await ticket.run(payloads)

    async def _run_ticket(
        self, ticket: Ticket[T, R], payloads: Sequence[T], costs: Sequence[float]
    ) -> list[R]:
        ticket.open = False
        self._book.settle(ticket.tenant, ticket.priority, ticket.rows, queued=len(payloads))
        loop = asyncio.get_running_loop()
        rows = [
            _Row[T, R](p, loop.create_future(), c, ticket.priority)
            for p, c in zip(payloads, costs, strict=True)
        ]
        for row in rows:
            row.future.add_done_callback(
                functools.partial(self._book.row_done, ticket.tenant, ticket.priority)
            )
        self._queue.push(ticket.priority, ticket.tenant, rows)
        self._arrived.set()
        try:
            if len(rows) == 1:
                return [await rows[0].future]
            return list(await asyncio.gather(*(r.future for r in rows)))
        except asyncio.CancelledError:
            for row in rows:
                row.future.cancel()
            raise

    def _take(self, priority: int, room: int, cost_room: float, spent: float = 0.0) -> list[_Row[T, R]]:
        """Up to ``room`` rows of ``priority`` fitting ``cost_room`` beside the ``spent`` already taken."""
        return self._queue.take(room, cost_room, lambda r: r.cost, lambda r: r.future.done(), priority, spent)

    async def _arrival(self, timeout: float | None) -> None:
        """Wait for rows to be queued or a reservation to end, at most ``timeout`` seconds."""
        self._arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout)

    async def _gather(self) -> list[_Row[T, R]]:
        lim = self.limits
        hold_until: float | None = None  # how long a lower batch waits for a higher tier's rows
        while True:
            top = self._queue.top()
            if top is None:
                await self._arrival(None)
                continue
            if self._book.reserved_from(top + 1) > 0:
                hold_until = hold_until or time.perf_counter() + lim.max_wait_s
                if (left := hold_until - time.perf_counter()) > 0:
                    await self._arrival(left)
                    continue
            cost_room = self._book.cost_room(top)
            if rows := self._take(top, lim.max_batch_size, cost_room):
                break
        deadline = time.perf_counter() + lim.max_wait_s
        # Wait for company only while an admitted request of this priority is still preparing its rows.
        while self._book.reserved[top] > 0 and len(rows) < lim.max_batch_size:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            await self._arrival(left)
            spent = sum(r.cost for r in rows)
            more = self._take(top, lim.max_batch_size - len(rows), cost_room, spent)
            if not more and spent >= cost_room:
                break
            rows.extend(more)
        return rows

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            rows = [r for r in await self._gather() if not r.future.done()]
            if not rows:
                continue
            start = time.perf_counter()
            waits = [start - r.enqueued for r in rows]
            payloads = [r.payload for r in rows]
            self._running = True
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, payloads)
            except Exception as exc:  # one failure fails this batch's rows, not the worker
                for row in rows:
                    if not row.future.done():
                        row.future.set_exception(exc)
                continue
            finally:
                self._running = False
            took = time.perf_counter() - start
            self._batch_s = (
                took if not self._batch_s else self._batch_s + EWMA_WEIGHT * (took - self._batch_s)
            )
            if self._on_batch is not None:
                self._on_batch(BatchStats(len(rows), waits, payloads, took))
            for row, result in zip(rows, results, strict=True):
                if not row.future.done():
                    row.future.set_result(result)
