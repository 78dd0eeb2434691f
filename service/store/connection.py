"""The Redis client the store expects, and the 503 it answers when Redis cannot be used.

:func:`make_redis` builds a ``redis.asyncio.Redis`` that fails fast (short connect and socket timeouts,
one retry after a reconnect) because the store has its own outage policy (:mod:`service.store.gate`):
waiting on a dead Redis on the request path would be worse than answering from the local cache or
with 503.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from service.errors import Unavailable

#: What a failed Redis call can raise (connection refused, reset, timeout, server error replies).
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
#: Defaults of AIM_REDIS_TIMEOUT_MS (bound of one call), AIM_REDIS_POOL_SIZE (calls in flight) and
#: AIM_REDIS_POOL_WAIT_MS (wait for a free slot); see :class:`~service.store.gate.RedisGate`.
DEFAULT_TIMEOUT_S = 0.25
DEFAULT_SLOTS = 64
DEFAULT_SLOT_WAIT_S = 1.0
#: Pool connections beyond the gate's slots: the pub/sub listener, the background probe, and spares.
RESERVED_CONNECTIONS = 4


def make_redis(
    url: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_connections: int = DEFAULT_SLOTS + RESERVED_CONNECTIONS,
) -> Redis:
    """A ``decode_responses=True`` client for ``url`` with ``timeout_s`` connect/read timeouts.

    One retry after a reconnect covers a pooled connection that died with a restarted server. The pool
    holds at most ``max_connections``; :class:`~service.store.gate.RedisGate` keeps its callers below that.
    """
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=10,
        max_connections=max_connections,
    )


def unavailable(what: str, retry_after: float) -> Unavailable:
    """The 503 every Redis-dependent operation raises while Redis is unreachable."""
    return Unavailable(
        f"{what} is temporarily unavailable (the tenant database cannot be reached); try again shortly",
        code="dependency_unavailable",
        retry_after=retry_after,
    )


def overloaded(what: str) -> Unavailable:
    """The 503 of a call that found every Redis connection busy (back-pressure; Redis is up)."""
    return Unavailable(
        f"{what} is busy (every connection to the tenant database is in use); try again shortly",
        code="overloaded",
        retry_after=1,
    )


def outcome_unknown(what: str, idempotent: bool) -> Unavailable:
    """The 503 of a write whose command may have reached Redis before the failure."""
    retry = (
        "retrying with the same Idempotency-Key is safe: it returns the first outcome and never applies "
        "the write twice"
        if idempotent
        else "read it back before retrying (an Idempotency-Key header makes a retry safe)"
    )
    return Unavailable(
        f"{what}: the tenant database stopped answering after the write was sent, so whether it was "
        f"applied is unknown; {retry}",
        code="outcome_unknown",
        retry_after=1,
    )


def never_sent(exc: BaseException) -> bool:
    """True when the failure happened before anything was sent (connection refused, no socket file)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError | FileNotFoundError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class RedisUnavailable(Exception):
    """A gated call did not complete (internal; :meth:`as_error` turns it into the store's 503).

    ``busy``: no slot within ``slot_wait_s`` (Redis itself may be fine). ``sent``: the command may have
    reached Redis before the failure, so a write's outcome is unknown. ``retry_after``: seconds until
    a retry may succeed, set by the gate where it raises (while its breaker is open: until its next probe).
    """

    def __init__(
        self, reason: str, *, busy: bool = False, sent: bool = False, retry_after: float = 1.0
    ) -> None:
        super().__init__(reason)
        self.busy = busy
        self.sent = sent
        self.retry_after = retry_after

    def as_error(self, what: str, *, write: bool = False, idempotent: bool = False) -> Unavailable:
        """The one mapping of a failed call to a 503: ``outcome_unknown`` (a write that may have been
        sent), ``overloaded`` (no slot in time) or ``dependency_unavailable`` (Retry-After: the gate's)."""
        if write and self.sent:  # the script may have run: say so rather than "not applied"
            return outcome_unknown(what, idempotent)
        if self.busy:
            return overloaded(what)
        return unavailable(what, self.retry_after)
