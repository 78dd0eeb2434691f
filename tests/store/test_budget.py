"""One Redis time budget per request, against a real Redis the test stops (SIGSTOP): however many gated
calls a request makes, it waits for Redis at most its budget; a call cut short by the budget is no sign of
an outage; while the breaker is open, Retry-After says when the probe runs next."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from service.store import EmbeddedRedis, RedisGate, RedisUnavailable
from service.store.budget import spending, unbudgeted, wait_within

pytestmark = pytest.mark.anyio
TIMEOUT = 0.3


@contextlib.contextmanager
def _stopped(redis: EmbeddedRedis) -> Iterator[None]:
    """Redis hung (SIGSTOP) for the body."""
    os.kill(redis.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(redis.pid, signal.SIGCONT)


@pytest.fixture
async def gate(own_redis: EmbeddedRedis) -> AsyncIterator[RedisGate]:
    gate = RedisGate.from_url(own_redis.url, timeout_s=TIMEOUT, probe_interval_s=3.0, slots=4)
    yield gate
    await gate.aclose()


async def _failures(gate: RedisGate, calls: int) -> tuple[list[RedisUnavailable], float]:
    """``calls`` GETs one after another (as one request makes them); their errors and the time taken."""
    errors, start = [], time.perf_counter()
    for _ in range(calls):
        with pytest.raises(RedisUnavailable) as caught:
            await gate.call(lambda: gate.redis.get("k"))
        errors.append(caught.value)
    return errors, time.perf_counter() - start


async def test_a_request_waits_for_a_hung_redis_at_most_its_budget_over_all_its_calls(
    own_redis: EmbeddedRedis, gate: RedisGate
) -> None:
    assert await gate.call(lambda: gate.redis.set("k", "v"))
    with _stopped(own_redis):
        with spending(TIMEOUT) as budget:
            errors, elapsed = await _failures(gate, 3)  # key lookup, rate limit, record: one timeout
        assert TIMEOUT * 0.9 <= elapsed <= TIMEOUT + 0.25, elapsed
        assert budget.spent and "already waited 300 ms" in str(errors[-1])
        assert gate.is_up  # one timeout so far; the refused calls never reached Redis
        with spending(TIMEOUT / 2):
            _, elapsed = await _failures(gate, 2)  # cut at half a timeout: not an outage sign either
        assert TIMEOUT / 2 * 0.9 <= elapsed <= TIMEOUT / 2 + 0.25 and gate.is_up, elapsed
        _, elapsed = await _failures(gate, 1)  # outside any request: the call's own bound
        assert elapsed >= TIMEOUT * 0.9 and not gate.is_up  # the second full timeout opens the breaker


async def test_callers_sharing_one_lookup_each_wait_at_most_their_own_budget(
    own_redis: EmbeddedRedis, gate: RedisGate
) -> None:
    with _stopped(own_redis):
        shared = unbudgeted(gate.call(lambda: gate.redis.get("k")))  # bounded by the call's timeout
        with spending(TIMEOUT / 3) as budget:
            start = time.perf_counter()
            with pytest.raises(RedisUnavailable):
                await wait_within(asyncio.shield(shared))
            waited = time.perf_counter() - start
        assert TIMEOUT / 3 * 0.9 <= waited <= TIMEOUT / 3 + 0.2 and budget.spent, waited
        with pytest.raises(RedisUnavailable):
            await shared  # the lookup itself ran on, to its own bound


async def test_retry_after_says_when_the_breaker_probes_next(
    own_redis: EmbeddedRedis, gate: RedisGate
) -> None:
    with _stopped(own_redis):
        closed, _ = await _failures(gate, 1)
        assert closed[0].retry_after == 1.0  # the breaker is still closed: retry at once (1 s minimum)
        opening, _ = await _failures(gate, 1)  # the second timeout opens it; the probe runs in 3 s
        assert not gate.is_up and 2.5 <= opening[0].retry_after <= 3.0, opening[0].retry_after
        await asyncio.sleep(1.0)
        later, _ = await _failures(gate, 1)
        assert 1.5 <= later[0].retry_after <= 2.0, later[0].retry_after
        assert later[0].as_error("API key verification").headers == {"Retry-After": "2"}
