"""The one way the service calls Redis: a bounded wait for a slot, a bounded call, and a circuit breaker.

:meth:`RedisGate.call` runs one Redis operation (a script, a command, a pipeline) and either returns its
reply or raises :class:`RedisUnavailable`, always within ``slot_wait_s + timeout_s`` seconds:

- **Slots are back-pressure, not an outage.** At most ``slots`` calls are in flight; the others wait up
  to ``slot_wait_s`` for one (``busy``). The client's pool holds ``slots + RESERVED_CONNECTIONS``
  connections (pub/sub listener, background probe), so it never runs out before the slots do, and a
  full pool never opens the breaker.
- **A call is bounded.** Connect, read and the whole call (reconnect and retry included) finish within
  ``timeout_s``; a hung server (SIGSTOP, a partition) costs a caller at most that.
- **The breaker opens fast**: at once on a refused connection, or after ``failure_threshold``
  consecutive timeouts or resets (one slow answer on a loaded machine is not an outage; a hung server
  fails every call, so under traffic the threshold is reached within one timeout). From then on calls
  fail at once without touching Redis, and one background task PINGs Redis every ``probe_interval_s``
  (each PING bounded by ``timeout_s``). Only a fresh answer closes it (the probe's PING, or the
  invalidation listener's new subscription), never a call that was already in flight, so a
  half-working Redis cannot flap it; closing runs the recovery callbacks (the tenant store clears its
  key cache: invalidations published meanwhile may have been missed).
- :meth:`warm` opens the pool's connections at startup, so a burst on a cold replica does not pay
  dozens of connection handshakes at once inside its bound.
- **Error replies are not outages**: Redis answered, so the breaker stays closed; the call still fails.
- **Neither is our own slowness.** A call that times out while another call got its answer from Redis
  (this replica's event loop or CPU was too busy to read the reply in time) counts as ``busy``, not
  as a failure: only a Redis that answers nobody opens the breaker.

Not thread-safe; used from one event loop. Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.store.budget import current as current_budget
from service.store.connection import (
    DEFAULT_SLOT_WAIT_S,
    DEFAULT_SLOTS,
    DEFAULT_TIMEOUT_S,
    REDIS_ERRORS,
    RESERVED_CONNECTIONS,
    RedisUnavailable,
    make_redis,
    never_sent,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Told of every gated call: its operation name, the seconds it held a slot (None: refused before one),
#: and whether it failed. The one place Redis calls are timed (``Metrics.observe_redis_call``).
CallObserver = Callable[[str, float | None, bool], None]

#: How often the background probe PINGs a Redis the breaker considers down.
PROBE_INTERVAL_S = 0.5

#: Failures that mean Redis (or the way to it) is down or hung.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisGate:
    """Bounded, breaker-guarded calls over ``redis`` (a ``decode_responses=True`` client)."""

    def __init__(
        self,
        redis: Redis,
        *,
        name: str = "redis",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        slots: int = DEFAULT_SLOTS,
        slot_wait_s: float = DEFAULT_SLOT_WAIT_S,
        probe_interval_s: float = PROBE_INTERVAL_S,
        failure_threshold: int = 2,
    ) -> None:
        self._redis = redis
        self._slot_count = slots
        self.failure_threshold = failure_threshold
        self._failures = 0
        self._name = name
        self.timeout_s = timeout_s
        self.slot_wait_s = slot_wait_s
        self.probe_interval_s = probe_interval_s
        self._slots = asyncio.Semaphore(slots)
        self._owns_redis = False
        self._probe: asyncio.Task[None] | None = None
        self._on_recovery: list[Callable[[], None]] = []
        self.down_since: float | None = None
        self._last_answer = 0.0  # when a call last got its reply
        self._next_probe = 0.0  # when the background probe next PINGs (while the breaker is open)
        self.busy_count = 0  # calls refused for want of a slot or time (back-pressure), for tests and benches
        self.openings = 0  # times the breaker opened
        self.observer: CallObserver | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        slots: int = DEFAULT_SLOTS,
        slot_wait_s: float = DEFAULT_SLOT_WAIT_S,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> RedisGate:
        """A gate over its own client, sized for ``slots``; :meth:`aclose` closes the client too."""
        redis = make_redis(url, timeout_s=timeout_s, max_connections=slots + RESERVED_CONNECTIONS)
        gate = cls(
            redis,
            timeout_s=timeout_s,
            slots=slots,
            slot_wait_s=slot_wait_s,
            probe_interval_s=probe_interval_s,
        )
        gate._owns_redis = True
        return gate

    def __repr__(self) -> str:
        return f"RedisGate({self._name!r}, up={self.is_up}, timeout_s={self.timeout_s})"

    @property
    def redis(self) -> Redis:
        """The client, to build commands and scripts with (run them through :meth:`call`)."""
        return self._redis

    @property
    def is_up(self) -> bool:
        return self.down_since is None

    def down_for(self, now: float | None = None) -> float | None:
        """Seconds since the outage was first seen, or None while the breaker is closed."""
        if self.down_since is None:
            return None
        return (time.monotonic() if now is None else now) - self.down_since

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever an outage ends."""
        self._on_recovery.append(callback)

    async def call(self, make: Callable[[], Awaitable[T]], op: str = "other") -> T:
        """Run ``make()`` (which starts one Redis operation) within the bounds; RedisUnavailable if not.

        Inside a request (`service.store.budget.spending`) the call also waits at most what is left of
        that request's Redis budget and is charged what it waited. ``op`` names the operation for
        :attr:`observer` (a fixed name: it is a metric label)."""
        budget = current_budget()
        if self.down_since is not None:
            self._observe(op, None, True)
            raise self._open_error()
        if budget is not None and budget.spent:
            self._observe(op, None, True)
            raise budget.exhausted()
        try:
            async with asyncio.timeout(self.slot_wait_s):
                await self._slots.acquire()
        except TimeoutError:
            self.busy_count += 1
            self._observe(op, None, True)
            raise RedisUnavailable("no Redis connection free in time", busy=True) from None
        started, failed = time.monotonic(), False
        try:
            if self.down_since is not None:  # it opened while this call waited for a slot
                raise self._open_error()
            limit = self.timeout_s if budget is None else min(self.timeout_s, budget.left)
            result = await self._bounded(make, started, limit)
        except RedisUnavailable:
            failed = True  # (a cancelled caller is not a failed call)
            raise
        finally:
            self._slots.release()
            held = time.monotonic() - started
            if budget is not None:
                budget.charge(held)
            self._observe(op, held, failed)
        self._failures, self._last_answer = 0, time.monotonic()
        return result

    def _observe(self, op: str, seconds: float | None, failed: bool) -> None:
        if self.observer is not None:
            self.observer(op, seconds, failed)

    def _open_error(self) -> RedisUnavailable:
        """The failure of a call refused while the breaker is open: retry when the probe next runs."""
        return RedisUnavailable("the Redis circuit breaker is open", retry_after=self._retry_after())

    async def _bounded(self, make: Callable[[], Awaitable[T]], started: float, limit: float) -> T:
        """``make()`` within ``limit`` seconds: the call's timeout, or less when the request's Redis
        budget has less left (a call cut short by the budget is no sign of an outage)."""
        try:
            async with asyncio.timeout(limit):
                return await make()
        except MaxConnectionsError:
            self.busy_count += 1
            raise RedisUnavailable("the Redis connection pool is full", busy=True) from None
        except OUTAGE_ERRORS as exc:
            sent = not never_sent(exc)
            if self._last_answer > started:  # Redis answered another call meanwhile: we were slow
                self.busy_count += 1
                raise RedisUnavailable(
                    f"{type(exc).__name__} while Redis answered", busy=True, sent=sent
                ) from None
            if limit < self.timeout_s and isinstance(exc, TimeoutError | RedisTimeoutError):
                cut = f"{type(exc).__name__} within the request's Redis budget"
                raise RedisUnavailable(cut, sent=sent) from None
            self.failed(exc)
            retry_after = self._retry_after()
            raise RedisUnavailable(f"{type(exc).__name__}", sent=sent, retry_after=retry_after) from None
        except RedisError as exc:  # an error reply: Redis is up
            raise RedisUnavailable(f"Redis replied {type(exc).__name__}", sent=True) from None

    def _retry_after(self) -> float:
        """Seconds a client should wait after a failure: until the next probe while the breaker is open."""
        return max(1.0, self._next_probe - time.monotonic()) if self.down_since is not None else 1.0

    async def warm(self) -> int:
        """Open up to ``slots`` pool connections now (one at a time); returns how many opened."""
        pool, opened = self._redis.connection_pool, []
        try:
            for _ in range(self._slot_count):
                async with asyncio.timeout(self.timeout_s):
                    opened.append(await pool.get_connection())  # type: ignore[no-untyped-call]
        except REDIS_ERRORS as exc:
            log.warning("%s: opened %d Redis connections at start, then %s", self._name, len(opened), exc)
        finally:
            for connection in opened:
                await pool.release(connection)
        return len(opened)

    async def ping(self) -> bool:
        """True when Redis answers PING now; False at once while the breaker is open."""
        try:
            await self.call(self._redis.ping, "ping")
        except RedisUnavailable as exc:
            return exc.busy  # every slot in use means Redis is answering others
        return True

    def ok(self) -> None:
        """Record a fresh answer from Redis; closes the breaker and runs the recovery callbacks if open."""
        self._failures = 0
        if self.down_since is None:
            return
        log.warning("%s: Redis reachable again after %.1f s", self._name, self.down_for())
        self.down_since = None
        for callback in self._on_recovery:
            callback()

    def failed(self, exc: BaseException) -> None:
        """Record an outage error; opens the breaker (logged once, background probe started) on a refused
        connection or the ``failure_threshold``-th failure in a row."""
        self._failures += 1
        if self.down_since is not None or (self._failures < self.failure_threshold and not never_sent(exc)):
            return
        self.down_since = self._next_probe = time.monotonic()
        self._next_probe += self.probe_interval_s
        self.openings += 1
        log.warning("%s: Redis unreachable (%s); breaker open", self._name, type(exc).__name__)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._run_probe(), name="redis-probe")

    async def aclose(self) -> None:
        """Stop the probe; close the client too if :meth:`from_url` made it."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if self._owns_redis:
            await self._redis.aclose()

    async def _run_probe(self) -> None:
        while self.down_since is not None:
            self._next_probe = time.monotonic() + self.probe_interval_s
            await asyncio.sleep(self.probe_interval_s)
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._redis.ping()
            except REDIS_ERRORS:
                continue
            self.ok()
