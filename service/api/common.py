"""Pieces every inference route shares: request ids, the task check, the response envelope."""

from __future__ import annotations

import secrets
from typing import Any

from service.api.components import Components
from service.api.deps import Caller
from service.errors import NotFound


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def require_task(c: Components, *tasks: str) -> None:
    if c.model.task not in tasks:
        raise NotFound(
            f"the loaded model ({c.model.name}) serves {c.model.task}, not {' or '.join(tasks)}",
            code="unsupported_task",
        )


def envelope(c: Components, caller: Caller, request_id: str) -> dict[str, Any]:
    """``id``, ``model``, ``tier`` and the ``modulation`` actually applied."""
    focus = caller.focus.as_json() if caller.focus is not None else None
    return {
        "id": request_id,
        "model": c.model.name,
        "tier": caller.tier.name,
        "modulation": {"sigma": caller.tier.sigma, "focus": focus},
    }
