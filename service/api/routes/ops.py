"""Operations: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import MetricsDep, QueueDepthDep, SettingsDep, running
from service.api.errors import error_responses
from service.errors import Unauthorized

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: still starting, or Redis is down."}})
async def readyz(request: Request) -> Response:
    """200 only when the model is loaded, tenant configuration can be resolved (Redis answers) and the
    generation engine, if any, can serve (a vLLM backend that is starting or restarting cannot).

    The tiers need no check: they are loaded before the components exist, and a failed reload keeps them.
    """
    components = running(request)
    checks: dict[str, Any] = {"model": components is not None}
    if components is not None:
        checks["redis"] = await components.store.ping()  # timed by the store's gate
        if components.engine is not None:
            checks["engine"] = components.engine.stats().ready
    ready = all(checks.values())
    status = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(
        status, status_code=200 if ready else 503, headers={} if ready else {"Retry-After": "5"}
    )


_PROMETHEUS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.get("/metrics", responses={**_PROMETHEUS_TEXT, **error_responses(401, 503)})
async def metrics(
    request: Request, settings: SettingsDep, metrics: MetricsDep, queue_depth: QueueDepthDep
) -> Response:
    # While starting, the dependencies answer 503 not_ready.
    # Operators only, always: the per-tier fidelity counters would tell a tenant, request by request,
    # whether its modulated answer equals the full model's (an oracle that undoes every tier).
    token = settings.metrics_token
    sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if token is None or not hmac.compare_digest(sent.encode(), token.encode()):
        raise Unauthorized(
            "/metrics needs 'Authorization: Bearer <metrics token>' (AIM_METRICS_TOKEN, or the file "
            "metrics_token in the state directory)"
        )
    metrics.set_queue_depth(queue_depth)
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
