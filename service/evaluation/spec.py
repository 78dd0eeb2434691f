"""Command-line value parsing, checked once at the edge: every problem is a BadInput naming the setting."""

from __future__ import annotations

import math
from collections.abc import Sequence

from service.errors import BadInput

MAX_POINTS = 10_000


def parse_grid(spec: str, *, setting: str) -> list[float]:
    """Noise levels from ``start:stop:step`` (stop included when on the grid) or a list ``a,b,c``.

    Values are finite and >= 0, sorted ascending, without duplicates. Raises BadInput naming ``setting``
    (e.g. ``--sigmas``) and the bad value.
    """
    text = spec.strip()
    if not text:
        raise BadInput(f"{setting} is empty; give start:stop:step (e.g. 0:20:0.2) or a list (e.g. 0,0.5,1)")
    values = _parse_range(text, setting) if ":" in text else _parse_list(text, setting)
    for v in values:
        if not (math.isfinite(v) and v >= 0.0):
            raise BadInput(f"{setting} {spec!r}: every value must be a finite number >= 0, got {v!r}")
    return sorted(set(values))


def _number(token: str, spec: str, setting: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise BadInput(f"{setting} {spec!r}: {token.strip()!r} is not a number") from None


def _parse_list(text: str, setting: str) -> list[float]:
    return [_number(tok, text, setting) for tok in text.split(",")]


def _parse_range(text: str, setting: str) -> list[float]:
    parts = text.split(":")
    if len(parts) != 3:
        raise BadInput(f"{setting} {text!r}: a range is start:stop:step (three numbers), e.g. 0:20:0.2")
    start, stop, step = (_number(p, text, setting) for p in parts)
    if not all(math.isfinite(v) for v in (start, stop, step)):
        raise BadInput(f"{setting} {text!r}: start, stop and step must be finite")
    if step <= 0.0:
        raise BadInput(f"{setting} {text!r}: step must be > 0, got {step!r}")
    if stop < start:
        raise BadInput(f"{setting} {text!r}: stop {stop!r} is below start {start!r}")
    # Counted on integers so that 0:20:0.2 gives exactly 101 points despite binary rounding of 0.2.
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > MAX_POINTS:
        raise BadInput(f"{setting} {text!r}: {count} points is more than the limit of {MAX_POINTS}")
    return [round(start + i * step, 10) for i in range(count)]


def parse_classes(spec: str, labels: Sequence[str], *, setting: str = "--classes") -> list[int]:
    """Class indices for a comma-separated list of label names (case-insensitive) or integer ids.

    Raises BadInput for an empty list, an unknown name (listing the known ones), an id out of range, or a
    class named twice.
    """
    names = [tok.strip() for tok in spec.split(",") if tok.strip()]
    if not names:
        raise BadInput(f"{setting} is empty; name one or more of: {', '.join(labels)}")
    lower = {label.lower(): i for i, label in enumerate(labels)}
    ids: list[int] = []
    for name in names:
        if name.lower() in lower:
            ids.append(lower[name.lower()])
        elif name.isdigit() and int(name) < len(labels):
            ids.append(int(name))
        else:
            raise BadInput(f"{setting}: unknown class {name!r}; the model's classes are: {', '.join(labels)}")
    if len(set(ids)) != len(ids):
        raise BadInput(f"{setting} {spec!r} names a class twice")
    return ids


def check_positive(value: int, *, setting: str) -> int:
    """``value`` when >= 1, else BadInput naming the setting."""
    if value < 1:
        raise BadInput(f"{setting} must be >= 1, got {value}")
    return value


def check_fraction(value: float, *, setting: str) -> float:
    """``value`` when strictly between 0 and 1, else BadInput naming the setting."""
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise BadInput(f"{setting} must be strictly between 0 and 1, got {value}")
    return value
