"""Per-bucket request rate limits, shared by every replica through one atomic Redis script.

Algorithm: GCRA, i.e. a token bucket of capacity ``per_minute`` refilled continuously at ``per_minute``
tokens per minute. From rest, ``per_minute`` requests pass at once; after that one passes every
``60 / per_minute`` seconds. A refused request consumes nothing and gets ``retry_after``, the seconds
until one more would pass. State per bucket is one Redis string (the theoretical arrival time) with an
expiry; the clock is Redis's ``TIME``, so replicas with skewed clocks still agree.

Redis outage policy: fail open to a local limiter. While Redis is unreachable each replica enforces the
same limits with an in-process GCRA of its own, so service continues and a single replica still bounds
each bucket; across N replicas a bucket may get up to N times its limit until Redis returns. Calls go
through the :class:`RedisGate`, so the hot path waits at most its bound on a hung server and not at all
while the breaker is open; a call that finds every connection busy also falls back to the local bucket.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from service.store.connection import RedisUnavailable
from service.store.gate import RedisGate

# KEYS: bucket. ARGV: per_minute. -> {allowed 0|1, retry_after seconds as a string}.
_GCRA = """
local rate = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = 60.0 / rate
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - 60.0
if allow_at > now then
  return {0, string.format('%.6f', allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, '0'}
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    """``allowed``; when refused, ``retry_after`` seconds (> 0) until a request would pass; ``local``
    when this replica's own bucket decided because the shared one could not be reached."""

    allowed: bool
    retry_after: float = 0.0
    local: bool = False


class LocalRateLimiter:
    """The same GCRA in process memory (one replica's view); used while Redis is down."""

    def __init__(self, max_buckets: int = 100_000) -> None:
        self._tat: dict[str, float] = {}
        self._max_buckets = max_buckets

    def hit(self, bucket: str, per_minute: int, now: float | None = None) -> RateDecision:
        now = time.monotonic() if now is None else now
        interval = 60.0 / per_minute
        tat = max(self._tat.get(bucket, now), now)
        allow_at = tat + interval - 60.0
        if allow_at > now:
            return RateDecision(False, allow_at - now, local=True)
        self._tat.pop(bucket, None)
        self._tat[bucket] = tat + interval
        while len(self._tat) > self._max_buckets:
            del self._tat[next(iter(self._tat))]
        return RateDecision(True, local=True)


class RateLimiter:
    """Shared limiter through ``gate``; ``namespace`` prefixes its keys (``<ns>:rl:<bucket>``)."""

    def __init__(self, gate: RedisGate, *, namespace: str = "aim") -> None:
        self._script = gate.redis.register_script(_GCRA)
        self._prefix = f"{namespace}:rl:"
        self.gate = gate
        self.local = LocalRateLimiter()

    async def hit(self, bucket: str, per_minute: int) -> RateDecision:
        """Count one request against ``bucket`` (e.g. a tenant id) limited to ``per_minute`` (> 0)."""
        try:
            allowed, retry_after = await self.gate.call(
                lambda: self._script(keys=[self._prefix + bucket], args=[per_minute]), "rate_limit"
            )
        except RedisUnavailable:
            return self.local.hit(bucket, per_minute)
        return RateDecision(bool(int(allowed)), float(retry_after))
