"""Tenant self-service: /v1/me, focus preferences, feedback labels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from service.api import schemas
from service.api.deps import (
    Caller,
    CallerDep,
    FocusResolverDep,
    MetricsDep,
    ModelDep,
    RecordsDep,
    StoreDep,
)
from service.api.errors import error_responses
from service.api.policy import EffectiveFocus, check_focus_request, stored_focus
from service.errors import BadInput

router = APIRouter(prefix="/v1", tags=["tenant"], responses=error_responses(401, 429, 503))


def me_json(caller: Caller) -> dict[str, Any]:
    tier = caller.tier
    limit = tier.rate_limit
    return {
        "tenant": caller.tenant.id,
        "name": caller.tenant.name,
        "tier": tier.name,
        "sigma": tier.sigma,
        "focus": caller.focus.as_json() if caller.focus is not None else None,
        "rate_limit": {"requests_per_minute": limit.requests_per_minute} if limit is not None else None,
    }


@router.get("/me", response_model=schemas.MeResponse)
async def me(caller: CallerDep) -> dict[str, Any]:
    return me_json(caller)


@router.put("/me/focus", response_model=schemas.MeResponse, responses=error_responses(400, 403, 413, 422))
async def set_focus(
    body: schemas.FocusRequest, caller: CallerDep, store: StoreDep, resolve: FocusResolverDep
) -> dict[str, Any]:
    policy = caller.tier.focus
    ids = check_focus_request(body.classes, body.strength, policy.allowed, policy.max_strength, resolve)
    tenant = await store.update_tenant(caller.tenant.id, focus=stored_focus(body))
    # Checked just above against this tier: the focus in force is exactly what was asked.
    focus = EffectiveFocus(tuple(body.classes), ids, body.strength, body.direction)
    return me_json(Caller(tenant, caller.tier, focus))


@router.delete("/me/focus", status_code=204)
async def clear_focus(caller: CallerDep, store: StoreDep) -> Response:
    await store.update_tenant(caller.tenant.id, focus=None)
    return Response(status_code=204)


@router.post("/feedback", status_code=204, responses=error_responses(400, 404, 413, 422))
async def feedback(
    body: schemas.FeedbackRequest,
    caller: CallerDep,
    records: RecordsDep,
    model: ModelDep,
    metrics: MetricsDep,
) -> Response:
    record = await records.get(body.id, caller.tenant.id)
    if body.index >= len(record.labels):
        raise BadInput(
            f"index {body.index} is out of range: request {body.id} had {len(record.labels)} input(s)",
            code="bad_index",
        )
    if body.label not in model.labels:
        raise BadInput(f"unknown label {body.label!r} for model {model.name}", code="unknown_class")
    if await records.first_label(body.id, body.index):
        metrics.count_feedback(record.tier, body.label == record.labels[body.index])
    return Response(status_code=204)
