"""Writing a calibrated sigma into one tier of tiers.yaml, keeping the file's comments, order and layout.

A ruamel.yaml round trip: only the chosen tier's ``target_fidelity`` / ``target_accuracy`` / ``sigma`` keys
change (they become one ``sigma`` key at the position of the first of them, with an end-of-line comment
saying how it was calibrated). Every other key, value and comment is written back as it was read. The new
file replaces the old one atomically, because a running service reloads it on change.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from service.errors import BadInput

_REPLACED = ("target_fidelity", "target_accuracy", "sigma")


def _yaml() -> YAML:
    yaml = YAML()  # round-trip mode
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines or comments
    return yaml


def _load(path: Path) -> tuple[YAML, Any]:
    yaml = _yaml()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--tiers {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    try:
        return yaml, yaml.load(text)
    except YAMLError as exc:
        raise BadInput(f"--tiers {str(path)!r} is not valid YAML: {exc}") from None


def check_tier(path: Path, tier: str) -> None:
    """Raise BadInput unless ``path`` is a readable YAML file with a mapping ``tiers.<tier>``."""
    _tier_entry(_load(path)[1], tier, path)


def write_tier_sigma(path: Path, tier: str, sigma: float, note: str) -> None:
    """Set ``tiers.<tier>.sigma = sigma`` (rounded to 4 decimals) in the YAML file at ``path``.

    ``note`` becomes the key's end-of-line comment (without the ``#``). Raises BadInput when the file is
    missing or not YAML, has no ``tiers`` mapping, or has no tier named ``tier`` (the message lists them).
    """
    yaml, doc = _load(path)
    entry = _tier_entry(doc, tier, path)
    _replace_sigma(entry, round(float(sigma), 4), note)
    _atomic_dump(yaml, doc, path)


def write_tier_calibration(path: Path, tier: str, sigma: float, target: float, note: str) -> None:
    """Keep ``tiers.<tier>.target_fidelity = target`` and put ``sigma`` (4 decimals) right after it.

    The tier then promises ``target`` and serves ``sigma`` (see `service.tiers.schema.TierSpec`); ``note``
    becomes the sigma's end-of-line comment. Other keys and comments stay as they were.
    """
    yaml, doc = _load(path)
    entry = _tier_entry(doc, tier, path)
    entry.pop("target_accuracy", None)
    if "target_fidelity" in entry:
        entry["target_fidelity"] = target
    else:
        entry.insert(0, "target_fidelity", target)
    entry.pop("sigma", None)
    entry.ca.items.pop("sigma", None)
    entry.insert(list(entry.keys()).index("target_fidelity") + 1, "sigma", round(float(sigma), 4))
    entry.yaml_add_eol_comment(f"# {note}", "sigma")
    _atomic_dump(yaml, doc, path)


def _tier_entry(doc: Any, tier: str, path: Path) -> Any:
    tiers = doc.get("tiers") if hasattr(doc, "get") else None
    if tiers is None or not hasattr(tiers, "keys"):
        raise BadInput(f"--tiers {str(path)!r} has no 'tiers' mapping")
    if tier not in tiers or not hasattr(tiers[tier], "insert"):
        known = ", ".join(str(k) for k in tiers)
        raise BadInput(f"--tier {tier!r} is not a tier of {str(path)!r}; its tiers are: {known}")
    return tiers[tier]


def _replace_sigma(entry: Any, sigma: float, note: str) -> None:
    """Replace the tier's sigma-setting keys by one ``sigma`` key in the first one's place.

    The first replaced key's end-of-line comment is swapped for ``note``; comment lines that follow it
    (ruamel stores them in the same token) are kept.
    """
    keys = list(entry.keys())
    present = [k for k in keys if k in _REPLACED]
    position = keys.index(present[0]) if present else 0
    token = entry.ca.items.get(present[0]) if present else None
    for key in present:
        entry.ca.items.pop(key, None)
        del entry[key]
    entry.insert(position, "sigma", sigma)
    comment = token[2] if token is not None and len(token) > 2 else None
    if comment is None:
        entry.yaml_add_eol_comment(f"# {note}", "sigma")
        return
    following = comment.value.split("\n", 1)[1] if "\n" in comment.value else ""
    comment.value = f"# {note}\n{following}"
    entry.ca.items["sigma"] = token


def _atomic_dump(yaml: YAML, doc: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.dump(doc, handle)
        Path(tmp).chmod(path.stat().st_mode & 0o777)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
