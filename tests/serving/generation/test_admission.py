"""Generation admission on the real SmolLM2 preset: the batch fills, priority orders it, shutdown ends it."""

from __future__ import annotations

import asyncio

import pytest

from service.errors import Unavailable
from service.serving.generation import GenerationDone, collect
from tests.serving.generation import test_engine as engine_tests
from tests.serving.generation.test_engine import req, run_engine

lm = engine_tests.lm  # the real preset and its prompts, shared with the engine tests
prompts = engine_tests.prompts


def test_admission_fills_the_batch_whatever_the_queue_size(lm, prompts) -> None:
    sizes: list[int] = []

    async def body(engine):
        streams = [await engine.submit(req(prompts[i % 3], max_new_tokens=8)) for i in range(5)]
        with pytest.raises(Unavailable) as info:  # 4 batch slots + 1 queued: the 6th is refused
            await engine.submit(req(prompts[0]))
        done = await asyncio.gather(*(collect(s) for s in streams))
        return info.value, done

    err, done = run_engine(lm, body, hook=lambda s: sizes.append(s.batch_size), max_batch_size=4, max_queue=1)
    assert err.code == "overloaded" and len(done) == 5
    assert max(sizes) == 4  # the batch was filled, not limited to queue + 1 = 2 rows


def test_a_higher_priority_joins_the_batch_first(lm, prompts) -> None:
    async def body(engine):
        running = await engine.submit(req(prompts[0], max_new_tokens=12))
        await anext(running)  # the single slot is taken; the next two wait
        low = await engine.submit(req(prompts[1], max_new_tokens=4, priority=0))
        high = await engine.submit(req(prompts[2], max_new_tokens=4, priority=2))
        results = await asyncio.gather(collect(running), collect(low), collect(high))
        return results[1], results[2]

    low, high = run_engine(lm, body, max_batch_size=1, max_queue=4)
    assert high.queue_wait_s < low.queue_wait_s  # submitted later, admitted earlier


def test_end_all_ends_running_and_waiting_rows_with_shutting_down_and_keeps_serving(lm, prompts) -> None:
    async def body(engine):
        running = await engine.submit(req(prompts[0], max_new_tokens=400))
        await anext(running)
        waiting = await engine.submit(req(prompts[1], max_new_tokens=400))
        engine.end_all()
        codes = []
        for stream in (running, waiting):
            with pytest.raises(Unavailable) as info:
                async for _ in stream:
                    pass
            codes.append(info.value.code)
        after = await collect(await engine.submit(req(prompts[2], max_new_tokens=4)))
        return codes, after

    codes, after = run_engine(lm, body, max_batch_size=1, max_queue=4)
    assert codes == ["shutting_down", "shutting_down"]
    assert isinstance(after, GenerationDone) and after.usage.completion_tokens >= 1
