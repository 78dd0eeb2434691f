"""check_persistence against real Redis servers: the embedded default, one without persistence, one
with snapshots only, and one whose ACL refuses CONFIG (as a managed Redis may)."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio

from service.store import EmbeddedRedis, make_redis
from service.store.persistence import Persistence, check_persistence

pytestmark = pytest.mark.anyio


async def test_the_embedded_default_persists_with_an_append_only_file(own_redis: EmbeddedRedis) -> None:
    client = make_redis(own_redis.url)
    try:
        assert await check_persistence(client) is Persistence.AOF
    finally:
        await client.aclose()


async def test_no_persistence_is_an_error_in_the_log_and_snapshots_only_a_warning(
    own_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_redis(own_redis.url)
    try:
        await client.config_set("appendonly", "no")  # the embedded config has save "" already
        with caplog.at_level(logging.WARNING):
            assert await check_persistence(client) is Persistence.NONE
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "NO PERSISTENCE" in errors[0].getMessage()
        await client.config_set("save", "900 1")
        assert await check_persistence(client) is Persistence.RDB
    finally:
        await client.aclose()


async def test_a_redis_that_refuses_config_is_unknown_not_a_failure(
    own_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    admin = make_redis(own_redis.url)
    limited = None
    try:
        await admin.acl_setuser(
            "app", enabled=True, passwords=["+app-password-0123"], keys=["*"], commands=["+@all", "-config"]
        )
        limited = redis.asyncio.Redis(
            host="127.0.0.1", port=own_redis.port or 0, username="app", password="app-password-0123"
        )
        with caplog.at_level(logging.WARNING):
            assert await check_persistence(limited) is Persistence.UNKNOWN
        assert "cannot read Redis's persistence settings" in caplog.text
        assert "app-password-0123" not in caplog.text
    finally:
        if limited is not None:
            await limited.aclose()
        await admin.aclose()
