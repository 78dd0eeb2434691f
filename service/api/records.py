"""What each classification request answered, kept in Redis for a day so feedback can be scored.

``aim:req:<id>`` is a hash: ``tenant``, ``tier`` and ``labels`` (the served top-1 per input, JSON). A
feedback label is counted once per (request, index): ``aim:req:<id>:fb`` remembers the indices already
labelled. Writing a record is best effort: when Redis is down (or every connection busy) the answer still
goes out, at once while the breaker is open, and feedback on that request is later refused with 404
rather than counted wrongly. Every call goes through the store's :class:`RedisGate`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import cast

from service.errors import NotFound, Unavailable
from service.store import RedisGate, RedisUnavailable

RECORD_TTL_S = 24 * 3600
log = logging.getLogger("aimserve.records")


@dataclass(frozen=True, slots=True)
class Record:
    tenant: str
    tier: str
    labels: list[str]


class RequestRecords:
    def __init__(self, gate: RedisGate, ttl_s: int = RECORD_TTL_S) -> None:
        self._gate = gate
        self._ttl = ttl_s

    async def remember(self, request_id: str, tenant: str, tier: str, labels: list[str]) -> None:
        key = f"aim:req:{request_id}"
        pipe = self._gate.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"tenant": tenant, "tier": tier, "labels": json.dumps(labels)})
        pipe.expire(key, self._ttl)
        try:
            await self._gate.call(pipe.execute)
        except RedisUnavailable as exc:
            # While the breaker is open the gate has logged the outage once; one line per request
            # would flood the log for the whole outage.
            level = logging.WARNING if self._gate.is_up else logging.DEBUG
            log.log(level, "request record %s not kept: %s", request_id, exc)

    async def get(self, request_id: str, tenant: str) -> Record:
        """The record, only for the tenant that made the request (others get the same 404)."""
        key = f"aim:req:{request_id}"
        try:
            raw = await self._gate.call(lambda: self._gate.redis.hgetall(key))
        except RedisUnavailable:
            raise Unavailable(
                "request records are unavailable", code="dependency_unavailable", retry_after=5
            ) from None
        fields = cast(dict[str, str], raw)  # the store's client decodes responses (make_redis)
        if not fields or fields.get("tenant") != tenant:
            raise NotFound(f"no request {request_id} of yours is known (records last a day)")
        return Record(fields["tenant"], fields["tier"], json.loads(fields["labels"]))

    async def first_label(self, request_id: str, index: int) -> bool:
        """True the first time (request, index) is labelled; False for a repeat."""
        key = f"aim:req:{request_id}:fb"
        pipe = self._gate.redis.pipeline(transaction=True)
        pipe.sadd(key, str(index))
        pipe.expire(key, self._ttl)
        try:
            added, _ = await self._gate.call(pipe.execute)
        except RedisUnavailable:
            raise Unavailable(
                "request records are unavailable", code="dependency_unavailable", retry_after=5
            ) from None
        return bool(added)
