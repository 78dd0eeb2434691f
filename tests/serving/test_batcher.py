"""The dynamic batcher: gathering, ordering, queue-full refusal, dropped callers, failures."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.errors import Unavailable
from service.serving.batcher import BatchStats, DynamicBatcher


class Recorder:
    """A real `run_batch`: doubles each payload, remembers the batches it saw, can be held."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.thread_names: set[str] = set()

    def __call__(self, payloads: list[int]) -> list[int]:
        self.gate.wait(5)
        self.thread_names.add(threading.current_thread().name)
        self.batches.append(list(payloads))
        if any(p < 0 for p in payloads):
            raise ValueError("negative payload")
        return [2 * p for p in payloads]


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_concurrent_requests_share_batches_and_get_their_own_answers() -> None:
    rec = Recorder()
    stats: list[BatchStats] = []

    async def main() -> list[list[int]]:
        b = DynamicBatcher(rec, max_batch_size=8, max_wait_s=0.05, max_queue=100, on_batch=stats.append)
        await b.start()
        try:
            return list(await asyncio.gather(*(b.submit([i, i + 100]) for i in range(10))))
        finally:
            await b.stop()

    results = _run(main())
    assert results == [[2 * i, 2 * (i + 100)] for i in range(10)]
    assert sum(len(x) for x in rec.batches) == 20
    assert max(len(x) for x in rec.batches) == 8  # gathered up to the cap
    assert len(rec.batches) <= 4
    assert rec.thread_names == {"aim-forward_0"}  # the forward pass runs off the event loop
    assert [s.size for s in stats] == [len(x) for x in rec.batches]
    assert all(w >= 0 for s in stats for w in s.waits)


def test_full_queue_refuses_at_once_with_retry_after() -> None:
    rec = Recorder()
    rec.gate.clear()  # hold the worker so the queue fills

    async def main() -> None:
        b = DynamicBatcher(rec, max_batch_size=2, max_wait_s=0.0, max_queue=4, on_batch=None)
        await b.start()
        first = asyncio.create_task(b.submit([1, 2]))  # taken by the worker, which then blocks
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(b.submit([3, 4, 5, 6]))  # fills the queue
        await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        with pytest.raises(Unavailable) as info:
            await b.submit([7])
        assert time.perf_counter() - t0 < 0.05
        assert info.value.code == "overloaded" and info.value.headers["Retry-After"] == "1"
        rec.gate.set()
        assert await first == [2, 4]
        assert await queued == [6, 8, 10, 12]
        await b.stop()

    _run(main())


def test_cancelled_callers_are_not_run() -> None:
    rec = Recorder()
    rec.gate.clear()

    async def main() -> None:
        b = DynamicBatcher(rec, max_batch_size=4, max_wait_s=0.0, max_queue=100)
        await b.start()
        blocker = asyncio.create_task(b.submit([1]))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(b.submit([50, 51]))
        await asyncio.sleep(0.01)
        gone.cancel()  # the client went away while its rows waited
        await asyncio.sleep(0.01)
        rec.gate.set()
        assert await blocker == [2]
        assert await b.submit([9]) == [18]
        await b.stop()

    _run(main())
    assert all(50 not in batch for batch in rec.batches)


def test_a_failing_batch_fails_its_rows_and_the_worker_survives() -> None:
    rec = Recorder()

    async def main() -> None:
        b = DynamicBatcher(rec, max_batch_size=4, max_wait_s=0.0, max_queue=10)
        await b.start()
        with pytest.raises(ValueError, match="negative"):
            await b.submit([-1])
        assert await b.submit([3]) == [6]
        await b.stop()

    _run(main())


def test_submit_before_start_is_unavailable_and_bad_settings_are_named() -> None:
    b = DynamicBatcher(Recorder(), max_batch_size=1, max_wait_s=0, max_queue=1)
    with pytest.raises(Unavailable):
        _run(b.submit([1]))
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(Recorder(), max_batch_size=0, max_wait_s=0, max_queue=1)
