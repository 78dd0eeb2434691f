"""The batcher's scheduling and admission: fairness, priority, cost-bounded batches, refusals at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.errors import PayloadTooLarge, RateLimited, Unavailable
from service.serving.admission import PREEMPT_WINDOW_S
from service.serving.batcher import DynamicBatcher
from service.serving.fairqueue import FairQueue
from tests.serving.test_batcher import Recorder


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_fair_queue_alternates_tenants_and_serves_higher_priority_first() -> None:
    q: FairQueue[str] = FairQueue()
    q.push(0, "flood", [f"f{i}" for i in range(5)])
    q.push(0, "small", ["s0", "s1"])
    q.push(2, "premium", ["p0"])
    assert q.ahead_of(2) == 1 and q.ahead_of(0) == 8
    assert q.take(6, float("inf"), lambda _: 1.0, lambda _: False) == ["p0"]  # one priority per take
    assert q.take(2, float("inf"), lambda _: 1.0, lambda _: False, only=2) == []
    taken = q.take(5, float("inf"), lambda _: 1.0, lambda _: False)
    assert taken == ["f0", "s0", "f1", "s1", "f2"]
    assert q.take(10, 2.5, lambda _: 1.0, lambda e: e == "f3") == ["f4"]  # dead f3 is dropped
    assert len(q) == 0


def test_a_small_request_is_not_stuck_behind_a_flood_and_premium_goes_first() -> None:
    rec = Recorder()
    rec.gate.clear()

    async def main() -> list[list[int]]:
        b = DynamicBatcher(rec, max_batch_size=4, max_wait_s=0.0, max_queue=1000)
        await b.start()
        held = asyncio.create_task(b.submit([0], "x"))  # occupies the worker while the others queue
        await asyncio.sleep(0.05)
        flood = asyncio.create_task(b.submit(list(range(100, 140)), "flood", 0))
        small = asyncio.create_task(b.submit([7], "small", 0))
        premium = asyncio.create_task(b.submit([9], "premium", 2))
        await asyncio.sleep(0.05)
        rec.gate.set()
        await asyncio.gather(held, flood, small, premium)
        await b.stop()
        return rec.batches

    batches = _run(main())
    assert batches[0] == [0]
    assert batches[1] == [9]  # premium first, in a batch of its own
    assert batches[2][:3] == [100, 7, 101]  # then the two free tenants alternate


def test_batches_are_bounded_by_cost_and_a_lone_row_runs_at_once() -> None:
    rec = Recorder()

    async def main() -> float:
        b = DynamicBatcher(rec, max_batch_size=32, max_wait_s=5.0, max_queue=100, max_batch_cost=10)
        await b.start()
        t0 = time.perf_counter()
        assert await b.submit([1]) == [2]  # nothing is forming: no 5 s wait for company
        lone = time.perf_counter() - t0
        async with b.admit("t", 0, 4) as ticket:
            await ticket.run([1, 2, 3, 4], costs=[4, 4, 4, 4])
        await b.stop()
        return lone

    assert _run(main()) < 2.5  # far below the 5 s batching delay
    assert rec.batches[1:] == [[1, 2], [3, 4]]  # cost 8 per batch: a third row (12) would exceed 10


def test_permanent_limits_are_413_and_a_tenant_cap_is_429() -> None:
    rec = Recorder()
    rec.gate.clear()

    async def main() -> tuple[PayloadTooLarge, RateLimited]:
        b = DynamicBatcher(rec, max_batch_size=2, max_wait_s=0.0, max_queue=100, max_tenant_rows=8)
        await b.start()
        with pytest.raises(PayloadTooLarge) as big:
            await b.submit(list(range(9)), "t")
        running = asyncio.create_task(b.submit(list(range(8)), "t"))
        await asyncio.sleep(0.05)
        with pytest.raises(RateLimited) as capped:
            await b.submit([1], "t")
        rec.gate.set()
        assert await asyncio.wait_for(b.submit([5], "other"), 5) == [10]  # other tenants are not capped
        await running
        await b.stop()
        return big.value, capped.value

    big, capped = _run(main())
    assert big.status == 413 and big.code == "too_many_inputs" and "at most 8" in big.message
    assert capped.status == 429 and capped.code == "too_many_in_flight" and "Retry-After" in capped.headers


def test_a_request_is_refused_at_once_when_its_expected_wait_is_too_long() -> None:
    rec = Recorder()

    async def main() -> Unavailable:
        b = DynamicBatcher(rec, max_batch_size=2, max_wait_s=0.0, max_queue=1000, max_queue_wait_s=1.0)
        await b.start()
        rec.gate.clear()
        slow = asyncio.create_task(b.submit([1]))
        await asyncio.sleep(0.3)
        rec.gate.set()
        await slow  # one measured batch of about 0.3 s
        fits = int(1.0 / b.batch_seconds)  # batches that fit in the 1 s limit
        rec.gate.clear()
        # Admitted on an idle worker; then one batch runs and `fits` batches wait: (fits + 1) x t > 1 s.
        queued = asyncio.create_task(b.submit(list(range(2 * fits + 2))))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        with pytest.raises(Unavailable) as info:
            await b.submit([1])
        assert time.perf_counter() - t0 < 0.1
        rec.gate.set()
        await queued
        await b.stop()
        return info.value

    err = _run(main())
    assert err.code == "overloaded" and "expected wait" in err.message
    assert int(err.headers["Retry-After"]) >= 1


def test_a_lower_tier_runs_sub_batches_while_a_higher_tier_is_active() -> None:
    rec = Recorder()

    async def main() -> None:
        b = DynamicBatcher(rec, max_batch_size=32, max_wait_s=0.0, max_queue=100, max_batch_cost=8)
        await b.start()
        await b.submit([1, 2, 3, 4], "free", 0)  # alone: one batch of cost 4 (limit 8)
        await b.submit([5], "premium", 2)  # premium is active from now on
        await b.submit([6, 7, 8, 9], "free", 0)  # sub-batches: cost limit 8 / SUB_BATCH_SHARE = 2
        await b.stop()

    _run(main())
    assert rec.batches == [[1, 2, 3, 4], [5], [6, 7], [8, 9]]


def test_a_lower_batch_waits_briefly_for_a_higher_tier_request_that_is_preparing() -> None:
    rec = Recorder()

    async def main() -> None:
        b = DynamicBatcher(rec, max_batch_size=1, max_wait_s=2.0, max_queue=100)
        await b.start()
        rec.gate.clear()
        held = asyncio.create_task(b.submit([0], "x", 0))  # occupies the worker
        await asyncio.sleep(0.05)
        free = asyncio.create_task(b.submit([1], "free", 0))
        async with b.admit("premium", 2, 1) as ticket:  # admitted, still "tokenizing" when the pass ends
            await asyncio.sleep(0.05)
            rec.gate.set()
            await asyncio.sleep(0.2)  # well inside max_wait_s: the free row is held back meanwhile
            assert rec.batches == [[0]]
            await ticket.run([2])
        await asyncio.gather(held, free)
        await b.stop()

    _run(main())
    assert rec.batches == [[0], [2], [1]]


def test_rows_that_join_a_forming_batch_never_push_it_over_its_cost_limit() -> None:
    rec = Recorder()

    async def main() -> None:
        b = DynamicBatcher(rec, max_batch_size=32, max_wait_s=1.0, max_queue=100, max_batch_cost=8)
        await b.start()
        async with b.admit("a", 0, 3) as first, b.admit("b", 0, 1) as second:
            # The first request's two rows fill the cost limit; the worker waits for the preparing second
            # request, whose row (and the first request's third) must go to the next batch.
            running = asyncio.create_task(first.run([1, 2, 3], costs=[4, 4, 4]))
            await asyncio.sleep(0.05)
            await asyncio.gather(running, second.run([4], costs=[4]))
        await b.stop()

    _run(main())
    assert [sum(4 for _ in batch) for batch in rec.batches] == [8, 8]  # never 12: one batch's cost


def test_a_higher_tier_request_in_flight_longer_than_the_window_keeps_lower_batches_small() -> None:
    rec = Recorder()

    async def main() -> None:
        b = DynamicBatcher(rec, max_batch_size=32, max_wait_s=0.0, max_queue=100, max_batch_cost=8)
        await b.start()
        async with b.admit("premium", 2, 1) as ticket:  # preparing for longer than PREEMPT_WINDOW_S
            await asyncio.sleep(PREEMPT_WINDOW_S + 0.1)
            await b.submit([1, 2, 3, 4], "free", 0)  # premium is still in flight: sub-batches of cost 2
            await ticket.run([5])
        await b.stop()

    _run(main())  # about 2 s: the window is the point
    assert rec.batches == [[1, 2], [3, 4], [5]]
