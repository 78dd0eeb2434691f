"""Writing results: CSV tables, a JSON summary, and the output directory checked at the edge."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from service.errors import BadInput

Row = Mapping[str, float | int | str]


def prepare_out_dir(out: str) -> Path:
    """The ``--out`` directory, created when missing; BadInput when it is a file or cannot be created."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise BadInput(f"--out {out!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {out!r} cannot be created: {exc.strerror or exc}") from None
    return path


def _cell(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(path: Path, rows: Sequence[Row]) -> Path:
    """A header (the first row's keys, in order) and one line per row; floats to 6 significant digits."""
    if not rows:
        raise ValueError("write_csv needs at least one row")
    columns = list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV written by `write_csv`, as strings keyed by column."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """``data`` as indented JSON (non-finite floats are not expected and would be rejected)."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
