"""Admission shared by the classification batcher and the generation engines.

- `BatchLimits`: the batcher's bounds, each stated once.
- `InFlight`: rows each tenant has reserved, queued or running, capped per tenant: one more is refused at
  once with 429 ``too_many_in_flight`` (with Retry-After), so one tenant cannot fill the queue. The
  batcher counts a classification request's inputs, the generation engines one row per completion.
- `too_costly`: the one 413 ``request_too_costly`` for a request over its compute budget (classification
  inputs' tokens or pixels, a generation's prompt plus new tokens).
- `Reservations`: the batcher's admission: 413 for more rows than a request may ever have, 429 over the
  tenant's cap, 503 ``overloaded`` (with Retry-After) when the queue is full or the expected wait is over
  the limit; rows reserved and in flight per priority, and when each priority was last seen (the batcher
  runs smaller batches of a lower priority while a higher one is active: `Reservations.cost_room`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass

from service.errors import PayloadTooLarge, RateLimited, Unavailable

SUB_BATCH_SHARE = 4
"""A lower priority's batch costs at most 1 / SUB_BATCH_SHARE of ``max_batch_cost`` while a higher one
is active. On a CPU the forward's cost is close to linear in tokens, so this costs little throughput."""
PREEMPT_WINDOW_S = 2.0
"""A priority counts as active while it has rows in flight and for this long after it last admitted a
request or finished a row (a closed-loop client's next request arrives within it)."""


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


def too_costly(cost: int | None, limit: int, unit: str, setting: str, hint: str) -> PayloadTooLarge:
    """413 ``request_too_costly``: the request costs ``cost`` (None: more than ``limit``, counting stopped
    there) ``unit``, over the per-request compute budget ``limit`` set by ``setting``."""
    costs = f"{cost} {unit}" if cost is not None else f"more than {limit} {unit}"
    return PayloadTooLarge(
        f"this request costs {costs}; the per-request compute budget is {limit} {unit} ({setting}); {hint}",
        code="request_too_costly",
    )


class InFlight:
    """Rows in flight per tenant; ``limit`` None: no per-tenant cap. ``unit`` names a row in messages
    (a classification input, a generation stream)."""

    def __init__(self, limit: int | None, unit: str = "inputs") -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"a tenant's rows in flight must be capped at >= 1, got {limit}")
        self.limit = limit
        self.unit = unit
        self._rows: Counter[str] = Counter()

    def __getitem__(self, tenant: str) -> int:
        return self._rows[tenant]

    def check(self, tenant: str, rows: int, retry_after: float) -> None:
        """RateLimited (429 ``too_many_in_flight``) when ``rows`` more would exceed the tenant's cap."""
        if self.limit is not None and self._rows[tenant] + rows > self.limit:
            raise RateLimited(
                f"this tenant already has {self._rows[tenant]} {self.unit} in flight; at most "
                f"{self.limit} may be queued or running at once",
                code="too_many_in_flight",
                retry_after=max(1.0, retry_after),
            )

    def add(self, tenant: str, rows: int) -> None:
        self._rows[tenant] += rows

    def release(self, tenant: str, rows: int) -> None:
        left = self._rows[tenant] - rows
        if left > 0:
            self._rows[tenant] = left
        else:
            del self._rows[tenant]


class Reservations:
    """What admission promised: rows reserved per priority (admitted, still being prepared by their
    caller), rows in flight per tenant and per priority, and when each priority was last seen (admitted
    a request or finished a row)."""

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        self.reserved: Counter[int] = Counter()
        self.tenants = InFlight(limits.max_tenant_rows)
        self._live: Counter[int] = Counter()  # rows reserved, queued or running, by priority
        self._seen: dict[int, float] = {}

    def reserve(self, tenant: str, priority: int, rows: int, depth: int, wait: float) -> None:
        """Reserve ``rows`` for ``tenant`` behind ``depth`` rows queued or reserved, with ``wait`` seconds
        expected before its first batch, or refuse at once."""
        lim = self.limits
        if rows > lim.max_request_rows:
            raise PayloadTooLarge(
                f"this request has {rows} inputs; a request may have at most {lim.max_request_rows}",
                code="too_many_inputs",
            )
        self.tenants.check(tenant, rows, wait)
        if depth + rows > lim.max_queue:
            raise _overloaded(f"the request queue is full ({lim.max_queue} rows); retry shortly", wait)
        if wait > lim.max_queue_wait_s:
            raise _overloaded(
                f"the expected wait ({wait:.1f} s) exceeds {lim.max_queue_wait_s:g} s; retry shortly", wait
            )
        self.reserved[priority] += rows
        self.tenants.add(tenant, rows)
        self._live[priority] += rows
        self._seen[priority] = time.monotonic()

    def settle(self, tenant: str, priority: int, rows: int, queued: int) -> None:
        """``rows`` reserved rows are prepared: ``queued`` of them go on, the others are released."""
        self.reserved[priority] -= rows
        self.tenants.release(tenant, rows - queued)
        self._live[priority] -= rows - queued

    def row_done(self, tenant: str, priority: int, _future: object) -> None:
        """A queued row of ``tenant`` finished (a future's done callback)."""
        self.tenants.release(tenant, 1)
        self._live[priority] -= 1
        self._seen[priority] = time.monotonic()

    def reserved_from(self, priority: int) -> int:
        """Rows of ``priority`` or higher admitted and still being prepared."""
        return sum(n for p, n in self.reserved.items() if p >= priority)

    def cost_room(self, priority: int) -> float:
        """The cost limit of a batch of ``priority``: a sub-batch while a higher priority is active."""
        since = time.monotonic() - PREEMPT_WINDOW_S
        if any(p > priority and (t > since or self._live[p] > 0) for p, t in self._seen.items()):
            return self.limits.max_batch_cost / SUB_BATCH_SHARE
        return self.limits.max_batch_cost


def _overloaded(message: str, wait: float) -> Unavailable:
    """503 ``overloaded``, retry after the expected wait (at least a second)."""
    return Unavailable(message, code="overloaded", retry_after=max(1.0, wait))
