"""`aimserve eval questions` on a tiny bigbench-format task written here, with the real SmolLM2 preset."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import torch

from service.cli import main
from service.evaluation.choices import load_choices
from service.evaluation.report import read_csv

SIGMAS = "0,0.5,1,2,50"
REPEATS = 30
TOLERANCE_SE = 4.0  # |sampled mean - exact| allowed, in standard errors of the difference (fixed keys)

EXAMPLES = [
    ("How many legs does a dog have?", ["four", "two", "six"]),
    ("What colour is the sky on a clear day?", ["blue", "green", "red", "black"]),
    ("What is 2 + 2?", ["4", "5"]),
    ("Which animal says meow?", ["cat", "cow", "dog"]),
    ("What is the capital of France?", ["Paris", "Rome", "Berlin", "Madrid"]),
    ("Which is a fruit?", ["apple", "chair"]),
    ("What do bees make?", ["honey", "milk", "silk"]),
    ("Which is frozen water?", ["ice", "steam", "sand", "oil"]),
]


@pytest.fixture(scope="module")
def lm():
    from service.models import load_model
    from service.presets import build_preset

    state = Path(os.environ.get("AIM_STATE_DIR", ".aimserve"))
    return load_model(build_preset("smollm2-135m", state))


@pytest.fixture()
def task_file(tmp_path: Path) -> Path:
    """The right option listed first, as in many bigbench files: the shuffle must move it."""
    examples = [
        {"input": q, "target_scores": {o: int(i == 0) for i, o in enumerate(opts)}} for q, opts in EXAMPLES
    ]
    path = tmp_path / "tiny" / "task.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"name": "tiny", "examples": examples}))
    return path


def clean_accuracy(lm, task_file: Path) -> float:
    """Argmax over the option letters of the first-token logits, computed here (no noise, no sweep code)."""
    from service.serving.generation import encode_chat

    right = 0
    choices = load_choices(str(task_file), limit=None, seed=0)
    for c in choices:
        ids = encode_chat(lm.tokenizer, [{"role": "user", "content": c.prompt()}])
        letters = [lm.tokenizer.convert_tokens_to_ids(chr(65 + k)) for k in range(len(c.options))]
        with torch.inference_mode():
            logits = lm.model(torch.tensor([ids])).logits[0, -1]
        right += int(int(logits[letters].argmax()) == c.answer)
    return right / len(choices)


def test_options_are_shuffled_with_a_fixed_seed(task_file: Path):
    first = load_choices(str(task_file), limit=None, seed=0)
    assert first == load_choices(str(task_file), limit=None, seed=0)
    assert len({c.answer for c in first}) > 1  # the right option no longer always comes first
    assert [c.options for c in first] != [c.options for c in load_choices(str(task_file), limit=None, seed=1)]
    assert all(c.options[c.answer] == opts[0] for c, (_, opts) in zip(first, EXAMPLES, strict=True))


def test_sweep_matches_clean_model_theory_and_chance(lm, task_file: Path, tmp_path: Path):
    out = tmp_path / "q"
    argv = ["eval", "questions", "--tasks", str(task_file), "--sigmas", SIGMAS, "--repeats", str(REPEATS)]
    assert main([*argv, "--out", str(out)]) == 0
    rows = read_csv(out / "questions.csv")
    assert [float(r["sigma"]) for r in rows] == [float(s) for s in SIGMAS.split(",")]
    assert all(r["task"] == "tiny" and int(r["questions"]) == len(EXAMPLES) for r in rows)
    clean = clean_accuracy(lm, task_file)
    assert float(rows[0]["accuracy_exact"]) == float(rows[0]["accuracy_mean"]) == pytest.approx(clean)
    assert float(rows[0]["fidelity_exact"]) == 1.0
    for r in rows[1:]:
        gap = abs(float(r["accuracy_mean"]) - float(r["accuracy_exact"]))
        assert gap <= TOLERANCE_SE * float(r["accuracy_se"]) + 1e-6, r
    fidelity = [float(r["fidelity_exact"]) for r in rows]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(fidelity))  # monotone in σ
    chance = sum(1 / len(o) for _, o in EXAMPLES) / len(EXAMPLES)
    assert float(rows[-1]["chance"]) == pytest.approx(chance, abs=1e-6)
    assert abs(float(rows[-1]["accuracy_exact"]) - chance) < 0.05  # σ = 50: far above every letter gap
    assert (out / "questions.png").stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["questions"] == len(EXAMPLES)


def test_unknown_task_is_a_clear_error(tmp_path: Path, capsys):
    assert main(["eval", "questions", "--tasks", "no_such_task_xyz", "--out", str(tmp_path / "o")]) == 2
    assert "no_such_task_xyz" in capsys.readouterr().err


def test_clean_perplexity_ranks_own_text_below_scrambled(lm):
    from service.evaluation.coherence import clean_perplexity

    prompt = "Write one sentence about the ocean."
    text = "The ocean is vast and deep, covering most of the Earth."
    scrambled = "deep Earth vast the covering, ocean most and of is The."
    assert 1.0 < clean_perplexity(lm, prompt, text) < clean_perplexity(lm, prompt, scrambled) / 3
