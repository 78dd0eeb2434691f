"""The app factory. Nothing heavy happens at import or in `create_app`: the model, the store and the
tiers are loaded in the lifespan, by the components factory it is given (`service.api.builder`), which
tests and embedders call with a model and a store of their own."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.api import errors
from service.api.components import Components
from service.api.middleware import BodyLimit, RedisBudgetPerRequest, RequestMetrics
from service.api.routes import admin, inference, openai_compat, ops, tenant
from service.limits import MAX_BODY_BYTES
from service.metrics import Metrics

log = logging.getLogger("aimserve")

ComponentsFactory = Callable[[], AbstractAsyncContextManager[Components]]
"""Enters to start the components and exits to stop them (`service.api.builder.build_components`)."""


def create_app(factory: ComponentsFactory, *, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """An app whose lifespan runs the components ``factory()`` gives for as long as it serves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with factory() as components:
            app.state.components = components
            model = components.model
            log.info("serving %s (%s) on %s", model.name, model.task, model.device)
            yield

    app = FastAPI(
        title="aimserve",
        version=__version__,
        summary="One model, many behaviours: per-tenant logits modulation (AIM, WWW'25).",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (ops, inference, openai_compat, tenant, admin):
        app.include_router(module.router)
    app.add_middleware(RedisBudgetPerRequest, seconds=lambda: _redis_budget_s(app))
    app.add_middleware(RequestMetrics, metrics=lambda: _metrics(app))
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


def _metrics(app: FastAPI) -> Metrics | None:
    components = getattr(app.state, "components", None)
    return None if components is None else components.metrics


def _redis_budget_s(app: FastAPI) -> float | None:
    """One ``AIM_REDIS_TIMEOUT_MS`` per request, however many Redis calls it makes."""
    components = getattr(app.state, "components", None)
    return None if components is None else components.settings.redis_timeout_s
