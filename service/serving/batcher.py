"""A dynamic batcher: rows of all tenants are gathered into one forward pass and answered one by one.

Contract:
- Admission comes first and is cheap: ``admit(tenant, priority, rows)`` reserves queue room for a
  request before the caller prepares (tokenizes, decodes) its inputs, or refuses at once:
  ``PayloadTooLarge`` (413 ``too_many_inputs``) for more rows than a request may ever have,
  ``Unavailable`` (503 ``overloaded``, with Retry-After) when the queue is full or the expected wait
  (batches of queued rows of the same or higher priority, plus the running one, x the measured
  batch time) exceeds ``max_queue_wait_s``, ``RateLimited`` (429 ``too_many_in_flight``) when the
  tenant already has ``max_tenant_rows`` rows queued or running. No request times out in the queue.
- Rows are taken in `FairQueue` order: higher priority first, round-robin by row between tenants; one
  batch holds rows of one priority, so lower tiers' rows never slow a higher tier's batch.
  A batch holds at most ``max_batch_size`` rows whose summed cost is at most ``max_batch_cost``
  (a single row always runs), so no request holds the model for longer than one such batch.
- An idle worker dispatches at once: it waits (up to ``max_wait_s``) only while an admitted request
  is still preparing its rows, i.e. while a batch is known to be forming. Rows that arrive during a
  forward pass form the next batch, which starts as soon as the pass ends.
- A row whose caller went away (its future was cancelled: client disconnect) is dropped before the
  forward pass, so the model spends no time on it.
- ``run_batch`` runs in a dedicated thread and returns one result per row, in order; an exception
  fails every row of that batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.errors import PayloadTooLarge, RateLimited, Unavailable
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


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """max_batch_size: rows per forward pass; max_wait_s: the longest an idle worker waits for a forming
    batch; max_queue: rows queued or admitted; max_tenant_rows: one tenant's rows queued or running;
    max_batch_cost: summed row cost of one batch (the model's unit: tokens or pixels);
    max_queue_wait_s: the expected wait above which a request is refused at once."""

    max_batch_size: int
    max_wait_s: float
    max_queue: int
    max_tenant_rows: int | None = None
    max_batch_cost: float = math.inf
    max_queue_wait_s: float = math.inf

    def __post_init__(self) -> None:
        tenant_rows = self.max_queue if self.max_tenant_rows is None else self.max_tenant_rows
        if min(self.max_batch_size, self.max_queue, tenant_rows) < 1 or self.max_wait_s < 0:
            raise ValueError(
                f"max_batch_size ({self.max_batch_size}), max_queue ({self.max_queue}) and "
                f"max_tenant_rows ({tenant_rows}) must be >= 1, max_wait_s ({self.max_wait_s}) >= 0"
            )
        if not self.max_batch_cost > 0 or not self.max_queue_wait_s > 0:
            raise ValueError(
                f"max_batch_cost ({self.max_batch_cost}) and max_queue_wait_s ({self.max_queue_wait_s}) "
                "must be > 0"
            )

    @property
    def max_request_rows(self) -> int:
        """The most rows one request can ever be admitted with."""
        return min(self.max_queue, self.max_tenant_rows or self.max_queue)


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
        self._reserved = 0  # rows admitted whose caller is still preparing them
        self._in_flight: Counter[str] = Counter()  # per tenant: rows reserved, queued or running
        self._batch_s = 0.0  # running estimate of one batch's time (0 until measured)
        self._running = False  # a forward pass is in progress
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aim-forward")
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Rows waiting for a batch (admitted ones still preparing included)."""
        return len(self._queue) + self._reserved

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
        ahead = self._queue.ahead_of(priority) + self._reserved
        batches = math.ceil(ahead / self.limits.max_batch_size) + (1 if self._running else 0)
        return batches * self._batch_s

    @contextlib.asynccontextmanager
    async def admit(self, tenant: str, priority: int, rows: int) -> AsyncIterator[Ticket[T, R]]:
        """Reserve room for ``rows`` rows of ``tenant`` or refuse at once (see the module docstring)."""
        self._check_admission(tenant, priority, rows)
        ticket = Ticket(self, tenant, priority, rows)
        self._reserved += rows
        self._in_flight[tenant] += rows
        try:
            yield ticket
        finally:
            if ticket.open:  # never ran: give the room back
                ticket.open = False
                self._reserved -= rows
                self._release(tenant, rows)
                self._arrived.set()  # a waiting worker need not wait for this request any more

    async def submit(self, payloads: Sequence[T], tenant: str = "", priority: int = 0) -> list[R]:
        """Admit and run ``payloads`` in one call (callers with nothing to prepare)."""
        async with self.admit(tenant, priority, len(payloads)) as ticket:
            return await ticket.run(payloads)

    def _check_admission(self, tenant: str, priority: int, rows: int) -> None:
        if self._task is None:
            raise Unavailable("the model is not serving yet", code="not_ready", retry_after=1)
        lim = self.limits
        if rows > lim.max_request_rows:
            raise PayloadTooLarge(
                f"this request has {rows} inputs; a request may have at most {lim.max_request_rows}",
                code="too_many_inputs",
            )
        wait = self.expected_wait(priority)
        if lim.max_tenant_rows is not None and self._in_flight[tenant] + rows > lim.max_tenant_rows:
            raise RateLimited(
                f"this tenant already has {self._in_flight[tenant]} inputs in flight; at most "
                f"{lim.max_tenant_rows} may be queued or running at once",
                code="too_many_in_flight",
                retry_after=max(1.0, wait),
            )
        if self.depth + rows > lim.max_queue:
            raise Unavailable(
                f"the request queue is full ({lim.max_queue} rows); retry shortly",
                code="overloaded",
                retry_after=max(1.0, wait),
            )
        if wait > lim.max_queue_wait_s:
            raise Unavailable(
                f"the expected wait ({wait:.1f} s) exceeds {lim.max_queue_wait_s:g} s; retry shortly",
                code="overloaded",
                retry_after=wait,
            )

    async def _run_ticket(
        self, ticket: Ticket[T, R], payloads: Sequence[T], costs: Sequence[float]
    ) -> list[R]:
        ticket.open = False
        self._reserved -= ticket.rows
        self._release(ticket.tenant, ticket.rows - len(payloads))
        loop = asyncio.get_running_loop()
        rows = [
            _Row[T, R](p, loop.create_future(), c, ticket.priority)
            for p, c in zip(payloads, costs, strict=True)
        ]
        release = functools.partial(self._row_done, ticket.tenant)
        for row in rows:
            row.future.add_done_callback(release)
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

    def _row_done(self, tenant: str, _future: asyncio.Future[R]) -> None:
        self._release(tenant, 1)

    def _release(self, tenant: str, rows: int) -> None:
        left = self._in_flight[tenant] - rows
        if left > 0:
            self._in_flight[tenant] = left
        else:
            del self._in_flight[tenant]

    def _take(self, room: int, cost_room: float, only: int | None = None) -> list[_Row[T, R]]:
        return self._queue.take(room, cost_room, lambda r: r.cost, lambda r: r.future.done(), only)

    async def _gather(self) -> list[_Row[T, R]]:
        lim = self.limits
        while not (rows := self._take(lim.max_batch_size, lim.max_batch_cost)):
            self._arrived.clear()
            await self._arrived.wait()
        deadline = time.perf_counter() + lim.max_wait_s
        # Wait for company only while an admitted request is still preparing its rows.
        while self._reserved > 0 and len(rows) < lim.max_batch_size:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
            spent = sum(r.cost for r in rows)
            more = self._take(lim.max_batch_size - len(rows), lim.max_batch_cost - spent, rows[0].priority)
            if not more and spent >= lim.max_batch_cost:
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
                took if self._batch_s == 0 else (1 - EWMA_WEIGHT) * self._batch_s + EWMA_WEIGHT * took
            )
            if self._on_batch is not None:
                self._on_batch(BatchStats(len(rows), waits, payloads, took))
            for row, result in zip(rows, results, strict=True):
                if not row.future.done():
                    row.future.set_result(result)
