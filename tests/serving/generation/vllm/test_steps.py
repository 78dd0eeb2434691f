"""Reading vLLM's per-step raw top logits: live fidelity (greedy rows) and the traffic sample, as the
built-in engine counts and samples them (the live parity check is in test_live.py)."""

from __future__ import annotations

import torch

from service.modulation import RowSpec
from service.serving.generation import GenerationRequest
from service.serving.generation.vllm.engine import VllmEngine, completion_body
from service.serving.generation.vllm.steps import StepReader
from service.serving.generation.vllm.supervisor import RemoteVllm
from service.serving.traffic import GENERATION_STEPS, GENERATION_TOP, is_sampled_step


def step(served: int, logits: dict[int, float]) -> dict[str, object]:
    """One step as vLLM streams it: the served token and its top raw logits, keyed ``token_id:N``."""
    return {
        "tokens": [f"token_id:{served}"],
        "top_logprobs": [{f"token_id:{t}": v for t, v in logits.items()}],
    }


def test_greedy_rows_count_served_against_raw_top1() -> None:
    reader = StepReader(compare=True, top=2)
    assert reader.read(step(5, {5: 3.0, 7: 1.0})) == [5]
    assert reader.read(step(7, {5: 3.0, 7: 1.0})) == [7]  # noise moved the argmax: not agreeing
    assert (reader.agree, reader.compared, reader.steps) == (1, 2, 2)


def test_sampled_rows_are_not_compared_but_are_sampled() -> None:
    reader = StepReader(compare=False, top=2)
    reader.read(step(7, {5: 3.0, 7: 1.0}))
    assert (reader.agree, reader.compared, reader.steps) == (0, 0, 1)
    sample = reader.sample()
    assert sample is not None and sample.tolist() == [[3.0, 1.0]]


def test_sample_takes_the_built_in_engines_steps_and_the_k_largest() -> None:
    reader = StepReader(compare=True, top=3)
    for position in range(40):
        # vLLM adds the served token to its step's entries when it is not among the top k: k + 1 values.
        reader.read(step(99, {1: 5.0 + position, 2: 4.0, 3: 2.0, 99: -1.0}))
    sample = reader.sample()
    assert sample is not None and sample.dtype == torch.float32
    picked = [p for p in range(40) if is_sampled_step(p)]
    assert len(picked) == GENERATION_STEPS == sample.shape[0]
    assert sample.tolist() == [[5.0 + p, 4.0, 2.0] for p in picked]
    assert reader.agree == 0 and reader.compared == 40


def test_a_step_with_fewer_values_than_k_is_not_sampled_and_no_steps_give_none() -> None:
    reader = StepReader(compare=True, top=4)
    reader.read(step(1, {1: 2.0, 2: 1.0}))
    assert reader.sample() is None
    assert StepReader(compare=True, top=4).read(None) == []


def small_engine(url: str, sample_share: float) -> VllmEngine:
    """A vLLM engine for a 100-token model served at ``url`` (EOS 0)."""
    return VllmEngine(
        RemoteVllm(url),
        served_name="m",
        context_length=64,
        vocab_size=100,
        eos_ids=frozenset({0}),
        max_running=4,
        max_queue=4,
        stall_s=10.0,
        sample_share=sample_share,
    )


def test_an_evenly_spread_share_of_requests_asks_for_the_sample() -> None:
    def ks(share: float, n: int) -> list[int]:
        engine = small_engine("http://127.0.0.1:9", share)
        return [engine._top() for _ in range(n)]

    assert ks(0.25, 8) == [GENERATION_TOP, 1, 1, 1, GENERATION_TOP, 1, 1, 1]
    assert ks(1.0, 3) == [GENERATION_TOP] * 3 and set(ks(0.0, 5)) == {1}
    req = GenerationRequest((1, 2, 3), 4, RowSpec(1.0, (5, 6)))
    assert completion_body("m", req)["logprobs"] == 1
    assert completion_body("m", req, top=GENERATION_TOP)["logprobs"] == GENERATION_TOP
