"""Tenant inference routes: /v1/classify, /v1/segment, /v1/generate."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Any

import torch
from fastapi import APIRouter, Request

from service.api import generate as gen
from service.api import schemas
from service.api.admission import budget_for, prepare_within, until_disconnect
from service.api.common import envelope, new_request_id, require_route
from service.api.components import Batcher
from service.api.deps import (
    BatcherDep,
    Caller,
    CallerDep,
    MetricsDep,
    ModelDep,
    RecordsDep,
    SettingsDep,
    TrafficDep,
)
from service.api.errors import error_responses
from service.api.policy import row_spec
from service.errors import BadInput
from service.models import LoadedModel
from service.serving.predict import ClassResult, Row, SegResult
from service.settings import Settings
from service.tasks import batched
from service.tasks.classes import CLASSIFY_ROUTE
from service.tasks.segmentation import SEGMENT_ROUTE

router = APIRouter(
    prefix="/v1", tags=["inference"], responses=error_responses(400, 401, 404, 413, 422, 429, 503)
)


def decode_image(encoded: str, index: int) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"inputs[{index}].image is not valid base64", code="bad_image") from None


async def _predict(
    batcher: Batcher,
    model: LoadedModel,
    settings: Settings,
    caller: Caller,
    count: int,
    raw: Callable[[], list[str | bytes]],
    top_k: int = 1,
) -> list[Any]:
    """Admit ``count`` rows before any decoding or tokenization, prepare them within the compute budget
    (off the event loop), then run them in the batcher."""
    async with batcher.admit(caller.tenant.id, caller.tier.priority, count) as ticket:
        budget = budget_for(settings, model.kind)
        items, costs = await asyncio.to_thread(lambda: prepare_within(model, raw(), budget))
        return await ticket.run(_rows(settings.secret, caller, items, top_k), costs)


def _rows(secret: bytes, caller: Caller, items: list[Any], top_k: int = 1) -> list[Row]:
    return [
        Row(
            item,
            row_spec(secret, caller.tier.name, caller.tier.sigma, caller.focus),
            top_k,
            caller.tier.name,
        )
        for item in items
    ]


@router.post("/classify", response_model=schemas.ClassifyResponse)
async def classify(
    request: Request,
    body: schemas.ClassifyRequest,
    caller: CallerDep,
    batcher: BatcherDep,
    model: ModelDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    traffic: TrafficDep,
    records: RecordsDep,
) -> dict[str, Any]:
    require_route(model, CLASSIFY_ROUTE)
    want_images = model.kind.input_kind == "image"
    for i, x in enumerate(body.inputs):
        if isinstance(x, schemas.ImageInput) != want_images:
            kind = 'images ({"image": "<base64>"})' if want_images else "texts"
            raise BadInput(f"inputs[{i}]: this model classifies {kind}", code="wrong_input_type")

    def raw() -> list[str | bytes]:
        return [
            decode_image(x.image, i) if isinstance(x, schemas.ImageInput) else str(x)
            for i, x in enumerate(body.inputs)
        ]

    work = _predict(batcher, model, settings, caller, len(body.inputs), raw, body.top_k)
    results: list[ClassResult] = await until_disconnect(request, work)
    labels, task = model.labels, batched(model.kind)
    metrics.count_fidelity(caller.tier.name, sum(r.top1 == r.clean_top1 for r in results), len(results))
    noise = [r.noise for r in results if r.noise is not None]
    unit = torch.stack(noise) if len(noise) == len(results) else None
    traffic.add(caller.tier.name, caller.tenant.id, torch.stack([r.logits for r in results]), unit)
    request_id = new_request_id()
    await records.remember(request_id, caller.tenant.id, caller.tier.name, [labels[r.top1] for r in results])
    return {
        **envelope(model, caller, request_id),
        "results": [task.respond(labels, r) for r in results],
    }


@router.post("/segment", response_model=schemas.SegmentResponse)
async def segment(
    request: Request,
    body: schemas.SegmentRequest,
    caller: CallerDep,
    batcher: BatcherDep,
    model: ModelDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> dict[str, Any]:
    require_route(model, SEGMENT_ROUTE)

    def raw() -> list[str | bytes]:
        return [decode_image(x.image, i) for i, x in enumerate(body.inputs)]

    work = _predict(batcher, model, settings, caller, len(body.inputs), raw)
    results: list[SegResult] = await until_disconnect(request, work)
    metrics.count_fidelity(
        caller.tier.name, sum(r.agreeing_pixels for r in results), sum(r.pixels for r in results)
    )
    task = batched(model.kind)
    results_json = [task.respond(model.labels, r) for r in results]
    return {**envelope(model, caller, new_request_id()), "results": results_json}


@router.post("/generate", response_model=schemas.GenerateResponse, responses=gen.STREAM_RESPONSE)
async def generate(
    request: Request, body: schemas.GenerateRequest, caller: CallerDep, g: gen.GenerationDep
) -> Any:
    return await gen.generate(g, caller, body, new_request_id(), request)
