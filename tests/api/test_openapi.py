"""The OpenAPI document itself (no server): every error a route can give is declared with the one body,
bounds are JSON Schema bounds, and both kinds of bearer token are security schemes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from service.api.app import create_app
from service.api.components import Components
from service.limits import MAX_INPUTS, MAX_NEW_TOKENS, MAX_STOP_STRINGS, MAX_TEMPERATURE

ERROR_REF = "#/components/schemas/ErrorResponse"
TENANT = {"401", "429", "503"}
BODY = {"400", "413", "422"}
EXPECTED = {
    ("post", "/v1/classify"): TENANT | BODY | {"404"},
    ("post", "/v1/segment"): TENANT | BODY | {"404"},
    ("post", "/v1/generate"): TENANT | BODY | {"404"},
    ("post", "/v1/completions"): TENANT | BODY | {"404"},
    ("post", "/v1/chat/completions"): TENANT | BODY | {"404"},
    ("get", "/v1/models"): TENANT,
    ("get", "/v1/me"): TENANT,
    ("put", "/v1/me/focus"): TENANT | BODY | {"403"},
    ("delete", "/v1/me/focus"): TENANT,
    ("post", "/v1/feedback"): TENANT | BODY | {"404"},
    ("post", "/admin/tenants"): {"401", "404", "503"} | BODY,
    ("get", "/admin/tenants"): {"401", "404", "503"},
    ("patch", "/admin/tenants/{tenant_id}"): {"401", "404", "503"} | BODY,
    ("delete", "/admin/tenants/{tenant_id}/keys/{key_id}"): {"401", "404", "422", "503"},
    ("post", "/admin/tiers/reload"): {"400", "401", "404", "503"},
    ("get", "/metrics"): {"401", "503"},
}


@asynccontextmanager
async def _never() -> AsyncIterator[Components]:
    raise AssertionError("the OpenAPI document needs no components")
    yield  # an async generator: the lifespan never enters it here


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return create_app(_never).openapi()


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_each_route_declares_its_error_statuses_with_the_one_body(doc, method, path):
    responses = doc["paths"][path][method]["responses"]
    errors = {status for status in responses if status >= "400"}
    assert errors == EXPECTED[(method, path)]
    for status in errors:
        assert responses[status]["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}
    for status in {"429", "503"} & errors:
        assert "Retry-After" in responses[status]["headers"]


def test_every_operation_of_the_document_is_checked_above(doc):
    operations = {(m, p) for p, item in doc["paths"].items() for m in item}
    unchecked = operations - set(EXPECTED) - {("get", "/healthz"), ("get", "/readyz")}
    # The remaining admin routes share the router's declarations checked above.
    assert all(path.startswith("/admin/") for _, path in unchecked), unchecked


def test_bounds_are_json_schema_bounds_from_the_limits(doc):
    schemas = doc["components"]["schemas"]
    text_inputs = schemas["ClassifyRequest"]["properties"]["inputs"]["anyOf"][0]
    assert (text_inputs["minItems"], text_inputs["maxItems"]) == (1, MAX_INPUTS)  # inputs: [] is 422
    generate = schemas["GenerateRequest"]["properties"]
    assert generate["temperature"]["maximum"] == MAX_TEMPERATURE
    assert generate["max_new_tokens"]["maximum"] == MAX_NEW_TOKENS
    assert generate["stop"]["maxItems"] == MAX_STOP_STRINGS
    assert generate["stream"]["type"] == "boolean"
    leaked = [k for k in ("ge", "le", "gt", "lt", "min_length", "max_length") if f'"{k}":' in str(doc)]
    assert leaked == []  # pydantic keywords that JSON Schema would ignore


def test_bearer_tokens_are_security_schemes(doc):
    schemes = doc["components"]["securitySchemes"]
    assert {name: s["scheme"] for name, s in schemes.items()} == {
        "TenantKey": "bearer",
        "AdminToken": "bearer",
    }
    assert doc["paths"]["/v1/classify"]["post"]["security"] == [{"TenantKey": []}]
    assert doc["paths"]["/admin/tenants"]["get"]["security"] == [{"AdminToken": []}]
