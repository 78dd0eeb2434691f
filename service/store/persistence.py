"""Whether the Redis behind the store keeps what it acknowledged: read once at startup.

A Redis without AOF and without RDB snapshots loses every tenant and key on a restart. The service
cannot fix that (it is the operator's Redis), so it says so loudly: an ERROR log line at every start and
the gauge ``aim_redis_persistence`` at :attr:`Persistence.NONE` (0), which an alert can watch.
A managed Redis may refuse ``CONFIG`` (renamed or denied by ACL): that is :attr:`Persistence.UNKNOWN`
(-1), logged as a warning, never a startup failure.
"""

from __future__ import annotations

import logging
from enum import IntEnum

from redis.asyncio import Redis

from service.store.connection import REDIS_ERRORS

log = logging.getLogger(__name__)


class Persistence(IntEnum):
    """The value of the ``aim_redis_persistence`` gauge."""

    UNKNOWN = -1  # CONFIG refused or Redis unreachable at start
    NONE = 0  # neither AOF nor RDB: a restart loses everything
    RDB = 1  # snapshots only: a crash loses the writes since the last snapshot
    AOF = 2  # append-only file (with or without snapshots)


async def check_persistence(redis: Redis) -> Persistence:
    """Read ``appendonly`` and ``save`` with CONFIG GET, log the verdict, and return it."""
    try:
        appendonly = await redis.config_get("appendonly")
        save = await redis.config_get("save")
    except REDIS_ERRORS as exc:
        log.warning(
            "cannot read Redis's persistence settings (%s: %s); make sure AOF or RDB snapshots are on, "
            "or acknowledged tenants and keys are lost when Redis restarts",
            type(exc).__name__,
            exc,
        )
        return Persistence.UNKNOWN
    if str(appendonly.get("appendonly", "")).lower() == "yes":
        return Persistence.AOF
    if str(save.get("save", "")).strip():
        log.warning("Redis persists by RDB snapshots only: a crash loses the writes since the last one")
        return Persistence.RDB
    log.error(
        'REDIS HAS NO PERSISTENCE (appendonly no, save ""): every tenant and key is lost when it '
        "restarts. Turn on AOF (appendonly yes) or RDB snapshots (save ...)"
    )
    return Persistence.NONE
