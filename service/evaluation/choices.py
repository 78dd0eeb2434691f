"""Multiple-choice question sets in bigbench's JSON task format, with options shuffled by a fixed seed.

A task is a bigbench task name (read from the installed ``bigbench`` package, ``make bigbench``; the package
is never imported, only its ``benchmark_tasks/<name>/task.json`` is read) or a path to a ``task.json`` of
the same format: ``{"examples": [{"input": str, "target_scores": {option: score, ...}}, ...]}``. An
example is used when it has 2 to 26 options and exactly one of them has the top score. Option order is
shuffled per question with ``random.Random(f"{seed}:{task}:{index}")``, because bigbench often lists the
right option first; the questions kept (``limit``) are a seeded sample, not the first ones of the file.
"""

from __future__ import annotations

import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import BadInput

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_OPTIONS = len(LETTERS)
DEFAULT_TASKS = "general_knowledge,date_understanding,sports_understanding,emoji_movie"
INSTRUCTION = "Answer with the letter of the correct option only."


@dataclass(frozen=True)
class Choice:
    """One question: ``options`` in the shuffled order shown, ``answer`` the index of the right one."""

    task: str
    question: str
    options: tuple[str, ...]
    answer: int

    def prompt(self) -> str:
        """The user turn: the question, lettered options ("A. …"), then `INSTRUCTION`."""
        lines = [f"{LETTERS[i]}. {text}" for i, text in enumerate(self.options)]
        return f"{self.question.strip()}\n" + "\n".join(lines) + f"\n{INSTRUCTION}"


def task_file(spec: str) -> tuple[str, Path]:
    """(task name, task.json path) for a file path or an installed bigbench task name."""
    path = Path(spec)
    if path.suffix == ".json" or path.is_file():
        return path.stem if path.name != "task.json" else path.parent.name, path
    found = importlib.util.find_spec("bigbench")
    if found is None or found.origin is None:
        raise BadInput(f"--tasks {spec!r}: no such file, and bigbench is not installed (run `make bigbench`)")
    candidate = Path(found.origin).parent / "benchmark_tasks" / spec / "task.json"
    if not candidate.is_file():
        raise BadInput(f"--tasks {spec!r}: not a file and not a bigbench JSON task")
    return spec, candidate


def load_choices(spec: str, *, limit: int | None, seed: int) -> list[Choice]:
    """The usable questions of one task (at most ``limit``, a seeded sample), options shuffled.

    Raises BadInput naming the task when the file cannot be read, is not a task, or has no usable example.
    """
    name, path = task_file(spec)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"--tasks {spec!r}: {path} cannot be read as JSON ({exc})") from None
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list):
        raise BadInput(f"--tasks {spec!r}: {path} has no 'examples' list")
    out = [c for i, e in enumerate(examples) if (c := _choice(name, i, e, seed)) is not None]
    if not out:
        raise BadInput(f"--tasks {spec!r}: no multiple-choice example with 2-{MAX_OPTIONS} options")
    if limit is not None and len(out) > limit:
        picked = sorted(random.Random(f"{seed}:{name}").sample(range(len(out)), limit))
        out = [out[i] for i in picked]
    return out


def _choice(task: str, index: int, example: Any, seed: int) -> Choice | None:
    if not isinstance(example, dict):
        return None
    question, scores = example.get("input"), example.get("target_scores")
    if not isinstance(question, str) or not question.strip() or not isinstance(scores, dict):
        return None
    if not 2 <= len(scores) <= MAX_OPTIONS or not all(isinstance(v, int | float) for v in scores.values()):
        return None
    best = max(scores.values())
    if sum(v == best for v in scores.values()) != 1:
        return None
    options = [str(k) for k in scores]
    random.Random(f"{seed}:{task}:{index}").shuffle(options)
    right = next(k for k, v in scores.items() if v == best)
    return Choice(task, question, tuple(options), options.index(str(right)))
