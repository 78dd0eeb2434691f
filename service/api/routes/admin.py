"""The admin API (`AIM_ADMIN_TOKEN`): tenants, keys, tiers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Response

from service.api import schemas
from service.api.deps import AdminDep, FocusResolverDep, StoreDep, TiersDep, TrafficDep
from service.api.errors import error_responses
from service.api.policy import stored_focus
from service.api.recalibrate import recalibrate, reload_now
from service.store import Tenant
from service.store.idempotency import check_idempotency_key
from service.tiers import TierRegistry

# Every admin route: 401 (token), 404 (admin API off, unknown tenant or key), 503 (Redis down).
router = APIRouter(
    prefix="/admin", tags=["admin"], dependencies=[AdminDep], responses=error_responses(401, 404, 503)
)
_BODY = error_responses(400, 413, 422)
_PATH = error_responses(422)  # a path parameter is always a string: declared for the one error body

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes a retry safe: a repeat within a day returns the first outcome, creating nothing.",
    ),
]


def _idempotency(value: str | None) -> str | None:
    return None if value is None else check_idempotency_key(value)


def _tier_name(tiers: TierRegistry, name: str | None) -> str:
    return tiers.current.default_tier if name is None else tiers.require(name).name


def tenant_json(t: Tenant) -> dict[str, Any]:
    return t.model_dump(mode="json")


@router.post("/tenants", status_code=201, responses=_BODY)
async def create_tenant(
    body: schemas.CreateTenant, store: StoreDep, tiers: TiersDep, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    tenant, key = await store.create_tenant(
        body.name, _tier_name(tiers, body.tier), idempotency_key=_idempotency(idempotency_key)
    )
    return {"tenant": tenant_json(tenant), "api_key": key.api_key, "key_id": key.key_id}


@router.get("/tenants")
async def list_tenants(store: StoreDep) -> dict[str, Any]:
    return {"tenants": [tenant_json(t) for t in await store.list_tenants()]}


@router.get("/tenants/{tenant_id}", responses=_PATH)
async def get_tenant(tenant_id: str, store: StoreDep) -> dict[str, Any]:
    tenant = await store.get_tenant(tenant_id)
    keys = await store.list_keys(tenant_id)
    return {**tenant_json(tenant), "keys": [k.model_dump(mode="json") for k in keys]}


@router.patch("/tenants/{tenant_id}", responses=_BODY)
async def patch_tenant(
    tenant_id: str, body: schemas.PatchTenant, store: StoreDep, tiers: TiersDep, resolve: FocusResolverDep
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.tier is not None:
        changes["tier"] = _tier_name(tiers, body.tier)
    if "focus" in body.model_fields_set:
        if body.focus is None:
            changes["focus"] = None
        else:
            resolve(body.focus.classes)  # unknown classes are a 400 naming them
            changes["focus"] = stored_focus(body.focus)
    return tenant_json(await store.update_tenant(tenant_id, **changes))


@router.delete("/tenants/{tenant_id}", status_code=204, responses=_PATH)
async def delete_tenant(tenant_id: str, store: StoreDep) -> Response:
    await store.delete_tenant(tenant_id)
    return Response(status_code=204)


@router.post("/tenants/{tenant_id}/keys", status_code=201, responses=_BODY)
async def issue_key(
    tenant_id: str, store: StoreDep, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    key = await store.issue_key(tenant_id, idempotency_key=_idempotency(idempotency_key))
    return {"key_id": key.key_id, "api_key": key.api_key}


@router.delete("/tenants/{tenant_id}/keys/{key_id}", status_code=204, responses=_PATH)
async def revoke_key(tenant_id: str, key_id: str, store: StoreDep) -> Response:
    await store.revoke_key(tenant_id, key_id)
    return Response(status_code=204)


def tiers_json(tiers: TierRegistry) -> dict[str, Any]:
    current = tiers.current
    return {
        "default_tier": current.default_tier,
        "tiers": {name: tier.as_json() for name, tier in current.tiers.items()},
    }


@router.get("/tiers")
async def get_tiers(tiers: TiersDep) -> dict[str, Any]:
    return tiers_json(tiers)


@router.post("/tiers/reload", responses=error_responses(400))
async def reload_tiers(tiers: TiersDep) -> dict[str, Any]:
    await reload_now(tiers)
    return tiers_json(tiers)


@router.post("/tiers/{tier}/calibrate", responses=_BODY)
async def calibrate_tier(
    tier: str, body: schemas.CalibrateTier, tiers: TiersDep, traffic: TrafficDep
) -> dict[str, Any]:
    """Re-solve the tier's σ for its target on recently served outputs (each tenant's share capped)."""
    done = await recalibrate(tiers, traffic, tier, body.target_fidelity, body.max_tenant_share, body.apply)
    return {**done.as_json(), "tiers": tiers_json(tiers)["tiers"]}
