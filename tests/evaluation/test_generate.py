"""`aimserve eval generate` on the real SmolLM2-135M-Instruct preset (a few questions, short answers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from service.cli import main
from service.evaluation.generate import load_questions, run_generation
from service.evaluation.report import read_csv

QUESTIONS = 4
NEW_TOKENS = 10


@pytest.fixture(scope="module")
def lm():
    from service.models import load_model
    from service.presets import build_preset

    state = Path(os.environ.get("AIM_STATE_DIR", ".aimserve"))
    return load_model(build_preset("smollm2-135m", state))


def test_cli_writes_accuracy_plot_and_samples(tmp_path, capsys):
    out = tmp_path / "gen"
    argv = ["eval", "generate", "--limit", str(QUESTIONS), "--sigmas", "0,3"]
    code = main([*argv, "--max-new-tokens", str(NEW_TOKENS), "--out", str(out)])
    assert code == 0
    rows = read_csv(out / "generate.csv")
    assert [float(r["sigma"]) for r in rows] == [0.0, 3.0]
    assert all(int(r["questions"]) == QUESTIONS for r in rows)
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    # σ = 0 is the unmodulated model: every step agrees with itself; σ = 3 is far above the LLM's logit gaps.
    assert float(rows[0]["step_fidelity"]) == 1.0
    assert float(rows[1]["step_fidelity"]) < 0.9
    samples = (out / "samples.txt").read_text()
    for q in load_questions()[:QUESTIONS]:
        assert samples.count(q.question) == 2
    with Image.open(out / "generate.png") as image:
        assert image.size[0] > 300
    assert "σ = 0: accuracy" in capsys.readouterr().out


def test_unmodulated_answers_are_plain_greedy_decoding(lm):
    """σ = 0 through the engine gives the same text as transformers' own greedy `generate`."""
    from service.serving.generation import encode_chat

    questions = load_questions()[10 : 10 + QUESTIONS]
    answers = run_generation(lm, questions, [0.0], max_new_tokens=NEW_TOKENS)
    for question, answer in zip(questions, answers, strict=True):
        ids = encode_chat(lm.tokenizer, [{"role": "user", "content": question.question}])
        with torch.inference_mode():
            out = lm.model.generate(
                torch.tensor([ids]),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=lm.tokenizer.pad_token_id,
            )
        reference = lm.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()
        assert answer.text == reference


def test_generation_on_a_classifier_is_refused(capsys, tmp_path):
    code = main(["eval", "generate", "--model", "digits", "--out", str(tmp_path)])
    assert code == 2
    assert "needs a model for text-generation" in capsys.readouterr().err
