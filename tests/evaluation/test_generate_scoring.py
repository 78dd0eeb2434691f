from __future__ import annotations

import pytest

from service.errors import BadInput
from service.evaluation.generate import Question, is_correct, load_questions


def test_builtin_questions_are_thirty_in_three_kinds():
    questions = load_questions()
    assert len(questions) == 30
    assert {q.kind for q in questions} == {"arithmetic", "capital", "opposite"}
    assert all(q.answers for q in questions)


@pytest.mark.parametrize(
    ("completion", "right"),
    [
        ("5", True),
        ("2 + 3 = 5.", True),
        ("The answer is 5", True),
        ("2 + 3 = 6", False),
        ("2 + 3", False),
        ("55", False),
        ("6, not 5", False),
    ],
)
def test_numeric_answers_skip_the_operands(completion, right):
    q = Question("arithmetic", "What is 2 + 3? Answer with a number only.", ("5",))
    assert is_correct(q, completion) is right


@pytest.mark.parametrize(
    ("completion", "right"),
    [("Paris", True), ("The capital of France is paris.", True), ("Parisian", False), ("Lyon", False)],
)
def test_word_answers_are_whole_words(completion, right):
    q = Question("capital", "What is the capital of France?", ("Paris",))
    assert is_correct(q, completion) is right


def test_malformed_question_file_names_the_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "a?", "answers": ["b"]}\n{"question": "c?", "answers": []}\n')
    with pytest.raises(BadInput, match="line 2: 'answers'"):
        load_questions(path)
