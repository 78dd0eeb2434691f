"""The background task that receives cache invalidations over Redis pub/sub and survives outages.

While subscribed, every message (a tenant id) is handed to ``on_message``. Whenever the subscription is
(re)established after a break, whether by this loop or by redis-py's transparent reconnect,
``on_reconnect`` is called first, because messages published while disconnected are lost for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from service.store.connection import REDIS_ERRORS
from service.store.gate import RedisGate

log = logging.getLogger(__name__)


class InvalidationListener:
    """Subscribe to ``channel`` and dispatch; reconnect every ``retry_s`` seconds while Redis is down."""

    def __init__(
        self,
        redis: Redis,
        channel: str,
        *,
        on_message: Callable[[str], None],
        on_reconnect: Callable[[], None],
        gate: RedisGate,
        retry_s: float = 0.5,
    ) -> None:
        self._redis = redis
        self._channel = channel
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._gate = gate
        self._retry_s = retry_s
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"invalidation:{self._channel}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.subscribed.clear()

    async def _run(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            conn = None
            try:
                await pubsub.subscribe(self._channel)
                self._on_reconnect()  # also at the first start: harmless on an empty cache
                conn = pubsub.connection
                if conn is not None:
                    # redis-py may reconnect and resubscribe by itself inside get_message().
                    conn.register_connect_callback(self._reconnected)
                self.subscribed.set()
                self._gate.ok()
                await self._pump(pubsub)
            except REDIS_ERRORS as exc:
                self.subscribed.clear()
                self._gate.failed(exc)
            finally:
                if conn is not None:
                    # The connection goes back to the pool, where its reconnects mean nothing to us.
                    conn.deregister_connect_callback(self._reconnected)
                await _close(pubsub)
            await asyncio.sleep(self._retry_s)

    async def _pump(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                self._on_message(str(message["data"]))

    def _reconnected(self, _connection: Any) -> None:
        log.info("invalidation channel %s: reconnected, dropping the local key cache", self._channel)
        self._on_reconnect()


async def _close(pubsub: Any) -> None:
    with contextlib.suppress(*REDIS_ERRORS):
        await pubsub.aclose()
