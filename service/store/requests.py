"""What each classification request answered, kept in Redis for a day so feedback can be scored.

``<ns>:req:<id>`` is a hash: ``tenant``, ``tier`` and ``labels`` (the served top-1 per input, JSON). A
feedback label is counted once per (request, index): ``<ns>:req:<id>:fb`` remembers the indices already
labelled (key names: :class:`service.store.scripts.Layout`; ``<ns>`` is the store's namespace).
Writing a record is best effort: when Redis is down (or every connection busy) the answer still goes
out, and feedback on that request is later refused with 404 rather than counted wrongly. Every call
goes through the store's :class:`RedisGate`; a failed read raises the store's 503 (``as_error``).

Records are written off the response path: :meth:`RequestRecords.remember` queues the record and returns;
a background task (:meth:`start`) writes everything queued in one non-transactional pipeline per flush, so
a burst of N answers costs one round trip, not N. Until its flush a record is answered from the queue, so
feedback sent right after the answer to the same replica finds it. The queue is bounded
(``max_pending``): past it, ``remember`` waits for a flush instead of growing without limit. :meth:`aclose`
writes what is still queued.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import cast

from service.errors import NotFound
from service.store.connection import RedisUnavailable
from service.store.gate import RedisGate
from service.store.scripts import Layout

RECORD_TTL_S = 24 * 3600
log = logging.getLogger("aimserve.records")


@dataclass(frozen=True, slots=True)
class Record:
    tenant: str
    tier: str
    labels: list[str]


class RequestRecords:
    def __init__(
        self, gate: RedisGate, ttl_s: int = RECORD_TTL_S, max_pending: int = 4096, *, namespace: str = "aim"
    ) -> None:
        self._gate = gate
        self._layout = Layout(namespace)
        self._ttl = ttl_s
        self._max_pending = max_pending
        self._pending: dict[str, Record] = {}
        self._writing: dict[str, Record] = {}  # taken by a flush whose pipeline has not returned yet
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Run the background writer on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.create_task(self._writer(), name="request-records")

    async def aclose(self) -> None:
        """Stop the writer once it has written what is queued (never cancelled mid-pipeline)."""
        task, self._task = self._task, None
        if task is not None:
            self._closing = True
            self._wake.set()
            await task
        await self.flush()

    async def remember(self, request_id: str, tenant: str, tier: str, labels: list[str]) -> None:
        """Queue the record; returns at once unless ``max_pending`` records are already queued."""
        self._pending[request_id] = Record(tenant, tier, labels)
        if self._task is None:  # no writer running (tests, tools): write now
            await self.flush()
            return
        self._wake.set()
        while len(self._pending) > self._max_pending and self._task is not None:
            self._flushed.clear()
            await self._flushed.wait()

    async def flush(self) -> None:
        """Write every queued record in one pipeline (best effort: a Redis failure drops them, logged)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        self._writing = {**self._writing, **batch}
        pipe = self._gate.redis.pipeline(transaction=False)
        for request_id, r in batch.items():
            key = self._layout.request(request_id)
            pipe.hset(key, mapping={"tenant": r.tenant, "tier": r.tier, "labels": json.dumps(r.labels)})
            pipe.expire(key, self._ttl)
        try:
            await self._gate.call(pipe.execute, "records_write")
        except RedisUnavailable as exc:
            # While the breaker is open the gate has logged the outage once; one line per flush
            # would flood the log for the whole outage.
            level = logging.WARNING if self._gate.is_up else logging.DEBUG
            log.log(level, "%d request records not kept: %s", len(batch), exc)
        finally:
            for request_id in batch:
                self._writing.pop(request_id, None)
            self._flushed.set()

    async def _writer(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def get(self, request_id: str, tenant: str) -> Record:
        """The record, only for the tenant that made the request (others get the same 404)."""
        queued = self._pending.get(request_id) or self._writing.get(request_id)
        if queued is not None and queued.tenant == tenant:
            return queued
        key = self._layout.request(request_id)
        try:
            raw = await self._gate.call(lambda: self._gate.redis.hgetall(key), "records_read")
        except RedisUnavailable as exc:
            raise exc.as_error("Reading request records") from None
        fields = cast(dict[str, str], raw)  # the store's client decodes responses (make_redis)
        if not fields or fields.get("tenant") != tenant:
            raise NotFound(f"no request {request_id} of yours is known (records last a day)")
        return Record(fields["tenant"], fields["tier"], json.loads(fields["labels"]))

    async def first_label(self, request_id: str, index: int) -> bool:
        """True the first time (request, index) is labelled; False for a repeat."""
        key = self._layout.feedback(request_id)
        pipe = self._gate.redis.pipeline(transaction=True)
        pipe.sadd(key, str(index))
        pipe.expire(key, self._ttl)
        try:
            added, _ = await self._gate.call(pipe.execute, "feedback")
        except RedisUnavailable as exc:
            # Never outcome_unknown: SADD is idempotent, a retry is always safe.
            raise exc.as_error("Recording feedback") from None
        return bool(added)
