"""ASGI middleware: the request body limit (413), per-tier request metrics, the Redis budget per request.

All three are plain ASGI so streaming responses pass through untouched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metrics
from service.store.budget import spending


class BodyLimit:
    """Refuse bodies over ``max_bytes`` with 413, by Content-Length or while reading a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {"error": {"code": "payload_too_large", "message": f"the request body exceeds {limit} bytes"}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestMetrics:
    """Count every request by tier, route template and status, with its latency.

    The tier is what the auth dependency stored in ``scope["state"]["tier"]``; unauthenticated requests
    count under tier ``"-"``. The route is the matched path template, never the raw path (bounded labels).
    """

    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            metrics = self.metrics()
            route = scope.get("route")
            path = getattr(route, "path", None)
            if metrics is not None and path is not None and path not in ("/metrics", "/healthz"):
                tier = scope.get("state", {}).get("tier", "-")
                metrics.observe_request(tier, path, status, time.perf_counter() - start)


class RedisBudgetPerRequest:
    """Run every HTTP request under one Redis time budget (`service.store.budget`): whatever Redis calls
    it makes, it waits for Redis at most ``seconds()`` in total (None: no budget, before startup)."""

    def __init__(self, app: ASGIApp, seconds: Callable[[], float | None]) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        seconds = self.seconds() if scope["type"] == "http" else None
        if seconds is None:
            await self.app(scope, receive, send)
            return
        with spending(seconds):
            await self.app(scope, receive, send)
