"""Dependencies: one per collaborator, the calling tenant, the admin check.

Every dependency here is ``async def`` although none awaits anything but `get_caller`'s store and limiter:
FastAPI runs a plain ``def`` dependency in its thread pool, one thread hand-off per dependency per request
(ten for ``/v1/classify``), which cost a lone request more than its model's forward (issue #13).

Route handlers stay thin: each declares the collaborators it uses (``store: StoreDep``, ``model: ModelDep``,
...) and receives a resolved `Caller` (tenant, tier in force, effective focus); none parses headers or
touches app state. The collaborators come from the `Components` the app's lifespan built
(`service.api.builder`); before it has, every dependency answers 503 ``not_ready``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.components import Batcher, Components
from service.api.policy import EffectiveFocus, FocusResolver, effective_focus
from service.errors import NotFound, RateLimited, Unauthorized, Unavailable
from service.metrics import Metrics
from service.models import LoadedModel
from service.serving.generation import GenerationEngine
from service.serving.traffic import TrafficSample
from service.settings import Settings
from service.store import RateLimiter, RequestRecords, Tenant, TenantStore
from service.tasks.base import unsupported
from service.tiers import Tier, TierRegistry


def running(request: Request) -> Components | None:
    """The app's components, or None while it is starting (`/readyz` reports that instead of raising)."""
    components: Components | None = getattr(request.app.state, "components", None)
    return components


def _components(request: Request) -> Components:
    components = running(request)
    if components is None:
        raise Unavailable("the service is starting", code="not_ready", retry_after=5)
    return components


async def get_settings(request: Request) -> Settings:
    return _components(request).settings


async def get_model(request: Request) -> LoadedModel:
    return _components(request).model


async def get_store(request: Request) -> TenantStore:
    return _components(request).store


async def get_limiter(request: Request) -> RateLimiter:
    return _components(request).limiter


async def get_tiers(request: Request) -> TierRegistry:
    return _components(request).tiers


async def get_metrics(request: Request) -> Metrics:
    return _components(request).metrics


async def get_records(request: Request) -> RequestRecords:
    return _components(request).records


async def get_focus_resolver(request: Request) -> FocusResolver:
    return _components(request).focus_resolver


async def get_traffic(request: Request) -> TrafficSample:
    return _components(request).traffic


async def get_queue_depth(request: Request) -> int:
    return _components(request).queue_depth


def _route(request: Request) -> str:
    return str(getattr(request.scope.get("route"), "path", request.url.path))


async def get_batcher(request: Request) -> Batcher:
    """404 ``unsupported_task`` when the loaded model's task is not served by a batcher (generation)."""
    c = _components(request)
    if c.batcher is None:
        raise unsupported(c.model, _route(request))
    return c.batcher


async def get_engine(request: Request) -> GenerationEngine:
    """404 ``unsupported_task`` when the loaded model does not generate text."""
    c = _components(request)
    if c.engine is None:
        raise unsupported(c.model, _route(request))
    return c.engine


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
StoreDep = Annotated[TenantStore, Depends(get_store)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
TiersDep = Annotated[TierRegistry, Depends(get_tiers)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RecordsDep = Annotated[RequestRecords, Depends(get_records)]
FocusResolverDep = Annotated[FocusResolver, Depends(get_focus_resolver)]
TrafficDep = Annotated[TrafficSample, Depends(get_traffic)]
QueueDepthDep = Annotated[int, Depends(get_queue_depth)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
EngineDep = Annotated[GenerationEngine, Depends(get_engine)]

# Declared in the OpenAPI document as security schemes; the 401s below are the service's own.
_tenant_key = HTTPBearer(
    scheme_name="TenantKey", description="A tenant's API key (`aim_sk_...`).", auto_error=False
)
_admin_token = HTTPBearer(scheme_name="AdminToken", description="`AIM_ADMIN_TOKEN`.", auto_error=False)
Credentials = HTTPAuthorizationCredentials | None


def _bearer(request: Request, credentials: Credentials) -> str:
    if credentials is not None and credentials.credentials.strip():
        return credentials.credentials.strip()
    if not request.headers.get("authorization"):
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <api key>'")
    raise Unauthorized("the Authorization header must be 'Bearer <api key>'")


@dataclass(frozen=True, slots=True)
class Caller:
    """The tenant making this request, with the tier and focus in force for it right now."""

    tenant: Tenant
    tier: Tier
    focus: EffectiveFocus | None


async def get_caller(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    tiers: TiersDep,
    limiter: LimiterDep,
    resolve: FocusResolverDep,
    credentials: Annotated[Credentials, Security(_tenant_key)],
) -> Caller:
    token = _bearer(request, credentials)
    admin = settings.admin_token
    if admin is not None and hmac.compare_digest(token.encode(), admin.encode()):
        raise Unauthorized("the admin token is not a tenant key; use a tenant's API key")
    tenant = await store.resolve_key(token)
    tier = tiers.tier_for(tenant.tier)
    request.scope.setdefault("state", {})["tier"] = tier.name
    if tier.rate_limit is not None:
        decision = await limiter.hit(f"tenant:{tenant.id}", tier.rate_limit.requests_per_minute)
        if not decision.allowed:
            raise RateLimited(
                f"rate limit of {tier.rate_limit.requests_per_minute} requests per minute reached",
                retry_after=decision.retry_after,
            )
    focus = None
    if tenant.focus is not None:
        pref = tenant.focus
        focus = effective_focus(
            pref.classes, pref.strength, pref.direction, tier.focus.allowed, tier.focus.max_strength, resolve
        )
    return Caller(tenant, tier, focus)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_admin(
    request: Request, settings: SettingsDep, credentials: Annotated[Credentials, Security(_admin_token)]
) -> None:
    admin = settings.admin_token
    if admin is None:
        raise NotFound("the admin API is off (AIM_ADMIN_TOKEN is not set)", code="admin_disabled")
    token = _bearer(request, credentials)
    if not hmac.compare_digest(token.encode(), admin.encode()):
        raise Unauthorized("invalid admin token")


AdminDep = Depends(require_admin)
