"""The Redis client the store expects, and a small health tracker / circuit breaker around it.

:func:`make_redis` builds a ``redis.asyncio.Redis`` that fails fast (short socket timeouts, one
reconnect attempt) because the store has its own outage policy: waiting seconds on a dead Redis on the
hot path would be worse than answering from the local cache or with 503.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from service.errors import Unavailable

log = logging.getLogger(__name__)

#: What a failed Redis call can raise (connection refused, reset, timeout, server error replies).
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)


def make_redis(url: str, *, timeout_s: float = 1.0) -> Redis:
    """A ``decode_responses=True`` client for ``url`` with ``timeout_s`` connect/read timeouts.

    One retry after a reconnect covers a pooled connection that died with a restarted server.
    """
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=10,
    )


def unavailable(what: str, retry_after: float) -> Unavailable:
    """The 503 every Redis-dependent operation raises while Redis is unreachable."""
    return Unavailable(
        f"{what} is temporarily unavailable (the tenant database cannot be reached); try again shortly",
        code="dependency_unavailable",
        retry_after=retry_after,
    )


class RedisHealth:
    """Tracks whether Redis answered lately; while it is down, lets one probe through per interval.

    Times are ``time.monotonic()`` seconds. Not thread-safe; used from one event loop.
    """

    def __init__(self, name: str, probe_interval_s: float = 1.0) -> None:
        self._name = name
        self.probe_interval_s = probe_interval_s
        self.down_since: float | None = None
        self._last_probe = 0.0

    @property
    def is_up(self) -> bool:
        return self.down_since is None

    def down_for(self, now: float | None = None) -> float | None:
        """Seconds since the outage was first seen, or None while Redis is up."""
        if self.down_since is None:
            return None
        return (time.monotonic() if now is None else now) - self.down_since

    def should_try(self, now: float) -> bool:
        """True while up; while down, True at most once per ``probe_interval_s``."""
        if self.down_since is None:
            return True
        if now - self._last_probe >= self.probe_interval_s:
            self._last_probe = now
            return True
        return False

    def ok(self) -> bool:
        """Record a successful call. Returns True when this ends an outage."""
        if self.down_since is None:
            return False
        log.warning("%s: Redis reachable again after %.1f s", self._name, self.down_for())
        self.down_since = None
        return True

    def failed(self, exc: BaseException, now: float | None = None) -> None:
        """Record a failed call; the first failure of an outage is logged."""
        if self.down_since is None:
            now = time.monotonic() if now is None else now
            # The failed call was this outage's first probe; later failures (e.g. the listener's
            # retries) do not push the next probe back.
            self.down_since = self._last_probe = now
            log.warning("%s: Redis unreachable (%s: %s)", self._name, type(exc).__name__, exc)
