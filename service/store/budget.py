"""One Redis time budget per HTTP request, carried by a context variable.

Each gated call is bounded by ``AIM_REDIS_TIMEOUT_MS``, but one request makes several (key lookup, rate
limit, request record): during a hang each would cost a full timeout. The web layer opens a budget of one
timeout per request (`spending`); every `RedisGate.call` made in that request's context waits at most
what is left of it and charges the time it waited for Redis, so the whole request waits for Redis at
most one timeout, however many calls it makes. A call once the budget is spent fails at once
(`RedisUnavailable`), and callers degrade as for any failed call (stale key cache, local rate bucket).

Waiting for a free connection (``AIM_REDIS_POOL_WAIT_MS``) is this replica's back-pressure, not Redis's
answer time, and is bounded by that setting on its own. Code outside any request (background writers,
the probe) runs without a budget: each of its calls is bounded by the timeout alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

from service.store.connection import RedisUnavailable

T = TypeVar("T")


class RedisBudget:
    """Seconds one request may still wait for Redis (``left`` may go below 0 once spent)."""

    __slots__ = ("left", "total")

    def __init__(self, seconds: float) -> None:
        self.total = seconds
        self.left = seconds

    @property
    def spent(self) -> bool:
        return self.left <= 0.0

    def charge(self, seconds: float) -> None:
        self.left -= seconds

    def exhausted(self) -> RedisUnavailable:
        """The failure of a call made (or cut short) once this budget is spent: not an outage sign."""
        return RedisUnavailable(f"this request already waited {self.total * 1000:g} ms for Redis")


_current: contextvars.ContextVar[RedisBudget | None] = contextvars.ContextVar("redis_budget", default=None)


def current() -> RedisBudget | None:
    """The budget of the request being served in this context, None outside any request."""
    return _current.get()


@contextlib.contextmanager
def spending(seconds: float) -> Iterator[RedisBudget]:
    """Run the body (one request) under a fresh budget of ``seconds``."""
    budget = RedisBudget(seconds)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def unbudgeted(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """``coro`` as a task outside any request's budget (work shared by several requests: each of them
    bounds its own wait with `wait_within`)."""
    context = contextvars.copy_context()
    context.run(_current.set, None)
    return asyncio.get_running_loop().create_task(coro, context=context)


async def wait_within(work: Awaitable[T], extra_s: float = 0.0) -> T:
    """Await ``work`` (Redis work shared with other requests) for at most what is left of this request's
    budget plus ``extra_s`` (a connection wait), charging the time waited; RedisUnavailable past it."""
    budget = _current.get()
    if budget is None:
        return await work
    started = time.monotonic()
    try:
        async with asyncio.timeout(max(0.0, budget.left) + extra_s):
            return await work
    except TimeoutError:
        raise budget.exhausted() from None
    finally:
        budget.charge(time.monotonic() - started)
