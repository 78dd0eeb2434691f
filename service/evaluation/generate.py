"""The LLM experiment: a short-answer question set answered by greedy, modulated generation under each σ.

Decoding goes through the serving path's `BuiltinEngine` (every step modulated at the row's own step
index, greedy on the modulated logits), so the answers are exactly what a tenant of that σ would read.
Scoring (documented in docs/results.md):
- numeric answers: the first number in the completion that is not one of the question's own operands must
  equal the answer (so "2 + 3 = 5" is right and "2 + 3 = 6" is wrong);
- word answers: one of the accepted words occurs as a whole word (case-insensitive).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from service.errors import BadInput
from service.evaluation.sampling import EVAL_SECRET
from service.modulation import RowSpec, derive_row_key, input_digest

_NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Question:
    """kind: a group name for per-kind accuracy; answers: accepted answers (any one is right)."""

    kind: str
    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    sigma: float
    question: Question
    text: str
    correct: bool
    tokens: int
    agree_steps: int


def load_questions(path: Path | None = None) -> list[Question]:
    """Questions from a JSONL file of ``{"kind", "question", "answers": [...]}`` (default: the built-in 30).

    Raises BadInput naming the file and line of the first malformed record.
    """
    source = path if path is not None else files("service.evaluation") / "data" / "questions.jsonl"
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInput(f"--data {str(source)!r} cannot be read: {exc.strerror or exc}") from None
    out = [_question(line, source, n) for n, line in enumerate(lines, 1) if line.strip()]
    if not out:
        raise BadInput(f"--data {str(source)!r} holds no questions")
    return out


def _question(line: str, source: Any, number: int) -> Question:
    where = f"--data {str(source)!r} line {number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where}: not JSON ({exc.msg})") from None
    question = record.get("question") if isinstance(record, dict) else None
    answers = record.get("answers") if isinstance(record, dict) else None
    if not isinstance(question, str) or not question.strip():
        raise BadInput(f"{where}: 'question' must be a non-empty string")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a for a in answers):
        raise BadInput(f"{where}: 'answers' must be a non-empty list of strings")
    kind = record.get("kind", "all")
    return Question(str(kind), question, tuple(answers))


def is_correct(question: Question, completion: str) -> bool:
    """The scoring rule of this module's docstring."""
    if all(_NUMBER.fullmatch(a) for a in question.answers):
        operands = set(_NUMBER.findall(question.question))
        found = [n for n in _NUMBER.findall(completion) if n not in operands]
        return bool(found) and found[0] in question.answers
    text = completion.lower()
    return any(re.search(rf"\b{re.escape(a.lower())}\b", text) for a in question.answers)


async def _answer_all(
    engine: Any, prompts: Sequence[tuple[int, ...]], questions: Sequence[Question], sigma: float, max_new: int
) -> list[Answer]:
    from service.serving.generation import GenerationRequest, collect

    async def one(ids: tuple[int, ...], q: Question) -> Answer:
        key = derive_row_key(EVAL_SECRET, "evaluation-generate", input_digest(q.question.encode()))
        req = GenerationRequest(prompt_ids=ids, max_new_tokens=max_new, spec=RowSpec(sigma, key))
        done = await collect(await engine.submit(req))
        text = done.text.strip()
        return Answer(sigma, q, text, is_correct(q, text), done.usage.completion_tokens, done.fidelity.agree)

    return list(await asyncio.gather(*(one(ids, q) for ids, q in zip(prompts, questions, strict=True))))


def run_generation(
    loaded: Any, questions: Sequence[Question], sigmas: Sequence[float], *, max_new_tokens: int
) -> list[Answer]:
    """Every question answered at every σ (greedy, chat template); answers grouped by σ in order.

    ``loaded`` is a text-generation `LoadedModel` (``.model``, ``.tokenizer``, ``.device``).
    """
    from service.serving.generation import BuiltinEngine, encode_chat

    tok = loaded.tokenizer
    prompts = [encode_chat(tok, [{"role": "user", "content": q.question}]) for q in questions]

    async def main() -> list[Answer]:
        engine = BuiltinEngine(
            loaded.model,
            tok,
            device=loaded.device,
            max_batch_size=len(questions),
            max_wait_ms=50.0,
            max_queue=len(questions) + 1,
        )
        await engine.start()
        try:
            answers: list[Answer] = []
            for sigma in sigmas:
                answers += await _answer_all(engine, prompts, questions, sigma, max_new_tokens)
            return answers
        finally:
            await engine.stop()

    return asyncio.run(main())


def generation_table(answers: Sequence[Answer], sigmas: Sequence[float]) -> list[dict[str, float | int]]:
    """One row per σ: overall and per-kind accuracy, mean completion tokens, and step fidelity (the share of
    decoding steps whose modulated argmax equals the unmodulated one)."""
    kinds = sorted({a.question.kind for a in answers})
    rows: list[dict[str, float | int]] = []
    for sigma in sigmas:
        group = [a for a in answers if a.sigma == sigma]
        row: dict[str, float | int] = {"sigma": sigma, "questions": len(group)}
        row["accuracy"] = sum(a.correct for a in group) / len(group)
        for kind in kinds:
            of_kind = [a for a in group if a.question.kind == kind]
            row[f"accuracy_{kind}"] = sum(a.correct for a in of_kind) / len(of_kind)
        tokens = sum(a.tokens for a in group)
        row["mean_tokens"] = tokens / len(group)
        row["step_fidelity"] = sum(a.agree_steps for a in group) / tokens if tokens else 0.0
        rows.append(row)
    return rows


def samples_text(answers: Sequence[Answer]) -> str:
    """A readable dump: for each σ, every question with its completion and a ✓/✗ mark."""
    out: list[str] = []
    current: float | None = None
    for a in answers:
        if a.sigma != current:
            current = a.sigma
            out.append(f"\n===== σ = {a.sigma:g} =====\n")
        mark = "✓" if a.correct else "✗"
        answer = " | ".join(a.question.answers)
        out.append(f"[{mark}] Q: {a.question.question}\n    expected: {answer}\n    A: {a.text!r}\n")
    return "".join(out).lstrip("\n")
