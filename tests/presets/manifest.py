"""Reading a built preset's ``aimserve.json`` in tests."""

from __future__ import annotations

import json
from typing import Any

from service.models import LoadedModel


def manifest(model: LoadedModel) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((model.path / "aimserve.json").read_text())
    return data
