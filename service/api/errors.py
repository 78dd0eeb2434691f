"""The one error handler: every failure leaves as ``{"error": {"code", "message"}}`` with its status.

Schema violations are 422 ``invalid_request`` (malformed JSON is 400 ``malformed_json``); framework 404/405
keep their status; anything unexpected is logged with its traceback and answered 500 without details.
`error_responses` declares the same body for each status a route can return, in the OpenAPI document.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from service.api.schemas import ErrorResponse
from service.errors import AimError, BadInput, InvalidRequest

log = logging.getLogger("aimserve.api")

_MEANING = {
    400: "Bad input: unusable values, or a body that is not JSON (`malformed_json`).",
    401: "No key, an unknown or revoked key, or the wrong kind of token.",
    403: "The tenant's tier forbids it (`focus_not_allowed`).",
    404: "An unknown resource, a task the model does not serve (`unsupported_task`), or the admin API off.",
    413: "The body or one input is larger than a limit.",
    422: "The body violates the request schema (`invalid_request`).",
    429: "The tier's rate limit is used up; see `Retry-After`.",
    503: "Overloaded, or a dependency (Redis) is down; see `Retry-After`.",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds until a retry may succeed.", "schema": {"type": "integer"}}
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of the error statuses a route can return, each with the one error body."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorResponse, "description": _MEANING[status]}
        if status in (429, 503):
            out[status]["headers"] = _RETRY_AFTER
    return out


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _render(exc: AimError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _aim_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AimError)
    return _render(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _render(BadInput("the request body is not valid JSON", code="malformed_json"))
    parts = []
    for e in errors[:5]:
        # Union members appear in ``loc`` under pydantic's type names (``list[...]``): not field names.
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body" and "[" not in str(p)) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return _render(InvalidRequest("; ".join(parts)))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    code = codes.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request)
    return error_response(exc.status_code, code, message, headers)


def _allowed(request: Request) -> str:
    """Every method the path serves, from the OpenAPI document (built once): FastAPI makes one route per
    method, and Starlette's 405 names only those of the first route whose path matched."""
    path = request.url.path
    methods = {
        method.upper()
        for template, item in request.app.openapi()["paths"].items()
        if compile_path(template)[0].fullmatch(path)
        for method in item
    }
    return ", ".join(sorted(methods))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "an internal error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(AimError, _aim_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
