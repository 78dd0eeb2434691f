"""Pieces every inference route shares: request ids, the task's route check, the response envelope."""

from __future__ import annotations

import secrets
from typing import Any

from service.api.deps import Caller
from service.models import LoadedModel
from service.tasks.base import unsupported


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def require_route(model: LoadedModel, route: str) -> None:
    """unsupported_task (404) unless the loaded model's task is served by ``route``."""
    if model.kind.route != route:
        raise unsupported(model, route)


def envelope(model: LoadedModel, caller: Caller, request_id: str) -> dict[str, Any]:
    """``id``, ``model``, ``tier`` and the ``modulation`` actually applied."""
    focus = caller.focus.as_json() if caller.focus is not None else None
    return {
        "id": request_id,
        "model": model.name,
        "tier": caller.tier.name,
        "modulation": {"sigma": caller.tier.sigma, "focus": focus},
    }
