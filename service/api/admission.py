"""Admission of classification requests: the compute budget, cost-bounded preparation, disconnects.

One request may cost at most ``AIM_MAX_REQUEST_TOKENS`` tokens (text, counted after truncation) or
``AIM_MAX_REQUEST_PIXELS`` pixels (images, at their original size): a 413 naming the limit otherwise. One
batch costs at most ``1 / BATCH_SHARE`` of that, so a maximal request is split over several batches and a
higher tier's row waits for at most one such batch, never for a whole large request.
Inputs are prepared one by one and the request is refused as soon as the budget is exceeded, so a
refused request costs at most its budget (plus one input) of preparation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import Receive

from service.errors import ClientGone
from service.models import LoadedModel
from service.serving.admission import too_costly
from service.settings import Settings
from service.tasks import Task

T = TypeVar("T")

BATCH_SHARE = 4
"""A batch costs at most this fraction (1 / BATCH_SHARE) of one request's compute budget. On a CPU the
forward's cost is close to linear in tokens, so splitting costs little throughput."""


@dataclass(frozen=True, slots=True)
class Budget:
    """The most one request (and one batch) may cost, in ``unit``; ``setting`` names where it is set."""

    limit: int
    unit: str
    setting: str

    @property
    def per_batch(self) -> float:
        return self.limit / BATCH_SHARE


def budget_for(settings: Settings, task: Task) -> Budget:
    """Tokens for a task over texts, original pixels for one over images."""
    if task.input_kind == "text":
        return Budget(settings.max_request_tokens, "tokens", "AIM_MAX_REQUEST_TOKENS")
    return Budget(settings.max_request_pixels, "pixels", "AIM_MAX_REQUEST_PIXELS")


def item_cost(item: Any) -> int:
    """Tokens of a text item, original pixels (height x width) of an image item."""
    if item.size is not None:
        return int(item.size[0] * item.size[1])
    return len(item.tensors["input_ids"])


def prepare_within(
    model: LoadedModel, raw: Sequence[str | bytes], budget: Budget
) -> tuple[list[Any], list[int]]:
    """Prepare inputs in order (in a worker thread); PayloadTooLarge once their cost exceeds the budget."""
    items: list[Any] = []
    costs: list[int] = []
    for r in raw:
        item = model.prepare(r)
        items.append(item)
        costs.append(item_cost(item))
        if sum(costs) > budget.limit:
            hint = "send fewer or smaller inputs"
            raise too_costly(None, budget.limit, budget.unit, budget.setting, hint)
    return items, costs


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first (then ClientGone, status 499).

    uvicorn does not cancel a non-streaming handler whose client has gone; once the body has been read,
    the ASGI receive channel's next message is ``http.disconnect``, so watching it is how queued rows
    of an abandoned request get cancelled before they reach the model.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientGone("the client closed the connection before the answer was ready")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
