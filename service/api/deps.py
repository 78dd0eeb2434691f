"""Dependencies: collaborators from app state, the calling tenant, the admin check.

Route handlers stay thin: they receive a resolved `Caller` (tenant, tier in force, effective focus) and
the `Components`, never parse headers or touch app state themselves.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.components import Components
from service.api.policy import EffectiveFocus, effective_focus
from service.errors import NotFound, RateLimited, Unauthorized
from service.store import Tenant
from service.tiers import Tier


def get_components(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


ComponentsDep = Annotated[Components, Depends(get_components)]

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
    request: Request, c: ComponentsDep, credentials: Annotated[Credentials, Security(_tenant_key)]
) -> Caller:
    token = _bearer(request, credentials)
    admin = c.settings.admin_token
    if admin is not None and hmac.compare_digest(token.encode(), admin.encode()):
        raise Unauthorized("the admin token is not a tenant key; use a tenant's API key")
    tenant = await c.store.resolve_key(token)
    tier = c.tiers.tier_for(tenant.tier)
    request.scope.setdefault("state", {})["tier"] = tier.name
    if tier.rate_limit is not None:
        decision = await c.limiter.hit(f"tenant:{tenant.id}", tier.rate_limit.requests_per_minute)
        if not decision.allowed:
            raise RateLimited(
                f"rate limit of {tier.rate_limit.requests_per_minute} requests per minute reached",
                retry_after=decision.retry_after,
            )
    focus = None
    if tenant.focus is not None:
        pref = tenant.focus
        focus = effective_focus(
            pref.classes,
            pref.strength,
            pref.direction,
            tier.focus.allowed,
            tier.focus.max_strength,
            c.focus_resolver,
        )
    return Caller(tenant, tier, focus)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_admin(
    request: Request, c: ComponentsDep, credentials: Annotated[Credentials, Security(_admin_token)]
) -> None:
    admin = c.settings.admin_token
    if admin is None:
        raise NotFound("the admin API is off (AIM_ADMIN_TOKEN is not set)", code="admin_disabled")
    token = _bearer(request, credentials)
    if not hmac.compare_digest(token.encode(), admin.encode()):
        raise Unauthorized("invalid admin token")


AdminDep = Depends(require_admin)
