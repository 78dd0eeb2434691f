"""A small Dockerfile parser for static checks (no Docker engine here).

Understands what the repo's Dockerfile uses: comments, line continuations, ``ARG``/``ENV`` with defaults and
quotes, ``FROM image [AS name]``, leading ``--flag=value`` options (``COPY --from``, ``HEALTHCHECK
--interval``), exec-form JSON arrays, and ``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` expansion.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

_VAR = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    """One instruction: upper-case ``keyword``, its leading ``--flags``, the remaining ``args`` text."""

    keyword: str
    args: str
    flags: Mapping[str, str]
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (``CMD ["a", "b"]``), None for the shell form."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.removeprefix("CMD").strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"line {self.line}: {self.keyword} exec form must be a JSON array of strings")
        return value

    def pairs(self) -> dict[str, str | None]:
        """``ARG``/``ENV``/``LABEL`` as name -> value (None for an ``ARG`` without default)."""
        tokens = shlex.split(self.args)
        if self.keyword == "ENV" and len(tokens) >= 2 and "=" not in tokens[0]:
            return {tokens[0]: " ".join(tokens[1:])}  # legacy `ENV NAME value`
        out: dict[str, str | None] = {}
        for token in tokens:
            name, eq, value = token.partition("=")
            out[name] = value if eq else None
        return out


@dataclass
class Stage:
    """One ``FROM`` and the instructions up to the next."""

    index: int
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """Environment set by this stage's ``ENV`` instructions (not inherited ones)."""
        out: dict[str, str] = {}
        for inst in self.all("ENV"):
            out.update({k: v or "" for k, v in inst.pairs().items()})
        return out


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}")

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each instruction: continuations joined, comment lines dropped."""
    out: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, also inside a continuation
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        out.append((start, " ".join(p for p in parts if p)))
        parts = []
    if parts:
        raise ValueError(f"line {start}: continuation at end of file")
    return out


def parse_instruction(number: int, line: str) -> Instruction:
    keyword, _, rest = line.partition(" ")
    rest = rest.strip()
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        token, _, rest = rest.partition(" ")
        name, _, value = token[2:].partition("=")
        flags[name] = value
        rest = rest.strip()
    return Instruction(keyword.upper(), rest, flags, number)


def parse_dockerfile(text: str) -> Dockerfile:
    """Parse ``text``; raises ValueError on an instruction before the first FROM other than ARG."""
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        inst = parse_instruction(number, line)
        if inst.keyword == "FROM":
            words = inst.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(len(stages), words[0], name))
        elif not stages:
            if inst.keyword != "ARG":
                raise ValueError(f"line {number}: {inst.keyword} before the first FROM")
            global_args.update(inst.pairs())
        else:
            stages[-1].instructions.append(inst)
    if not stages:
        raise ValueError("no FROM instruction")
    return Dockerfile(global_args, stages)


def expand(text: str, variables: Mapping[str, str | None]) -> str:
    """``$VAR``, ``${VAR}`` and ``${VAR:-default}`` replaced from ``variables`` (unset -> default or "")."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        value = variables.get(name)
        return value if value else (match.group(2) or "")

    return _VAR.sub(one, text)
