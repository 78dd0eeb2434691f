"""Generation admission on the real SmolLM2 preset: the batch fills, priority orders it, shutdown ends it;
the compute budget and the per-tenant stream cap (`Admitted`) in front of the real engine."""

from __future__ import annotations

import asyncio

import pytest

from service.errors import BadInput, PayloadTooLarge, RateLimited, Unavailable
from service.serving.generation import GenerationDone, collect
from service.serving.generation.admission import Admitted
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


# --- Admitted: the compute budget and the per-tenant stream cap in front of the real engine ------------


def run_admitted(lm, body, *, max_request_tokens=4096, tenant_max_rows=2, **settings):
    return run_engine(
        lm,
        lambda engine: body(
            Admitted(engine, max_request_tokens=max_request_tokens, tenant_max_rows=tenant_max_rows)
        ),
        **settings,
    )


def test_a_generation_over_the_compute_budget_is_413_naming_it_and_one_at_the_budget_runs(
    lm, prompts
) -> None:
    ids = prompts[0]
    budget = len(ids) + 6

    async def body(gate):
        with pytest.raises(PayloadTooLarge) as info:
            await gate.submit(req(ids, max_new_tokens=7, tenant="a"))
        done = await collect(await gate.submit(req(ids, max_new_tokens=6, tenant="a")))
        return info.value, done, gate.tenants["a"]

    err, done, left = run_admitted(lm, body, max_request_tokens=budget)
    assert err.status == 413 and err.code == "request_too_costly"
    assert f"costs {budget + 1} tokens" in err.message and f"budget is {budget} tokens" in err.message
    assert "AIM_MAX_REQUEST_TOKENS" in err.message
    assert done.usage.completion_tokens >= 1 and left == 0  # refused requests hold nothing


def test_a_tenant_over_its_streams_in_flight_is_429_and_gets_its_rows_back_however_streams_end(
    lm, prompts
) -> None:
    async def body(gate):
        first = await gate.submit(req(prompts[0], max_new_tokens=40, tenant="a"))
        second = await gate.submit(req(prompts[1], max_new_tokens=40, tenant="a"))
        with pytest.raises(RateLimited) as info:
            await gate.submit(req(prompts[2], max_new_tokens=4, tenant="a"))
        other = await collect(await gate.submit(req(prompts[2], max_new_tokens=4, tenant="b")))
        await anext(first)
        await first.aclose()  # a client that went away
        third = await gate.submit(req(prompts[2], max_new_tokens=4, tenant="a"))
        held = gate.tenants["a"]
        await collect(second)  # drained to its final event
        await collect(third)
        return info.value, other, held, gate.tenants["a"], gate.tenants["b"]

    err, other, held, left_a, left_b = run_admitted(lm, body, tenant_max_rows=2)
    assert err.status == 429 and err.code == "too_many_in_flight" and err.retry_after >= 1
    assert "2 streams in flight" in err.message
    assert other.usage.completion_tokens >= 1  # another tenant is not held back
    assert held == 2 and left_a == 0 and left_b == 0


def test_rows_refused_or_failed_by_the_engine_are_released(lm, prompts) -> None:
    async def body(gate):
        with pytest.raises(BadInput):  # the engine's own check: max_new_tokens beyond the context
            await gate.submit(req(prompts[0], max_new_tokens=gate.context_length, tenant="a"))
        stream = await gate.submit(req(prompts[0], max_new_tokens=400, tenant="a"))
        await anext(stream)
        gate.end_all()  # the engine fails the running row (shutting_down)
        with pytest.raises(Unavailable):
            async for _ in stream:
                pass
        return gate.tenants["a"]

    assert run_admitted(lm, body, max_request_tokens=1 << 20, tenant_max_rows=1) == 0
