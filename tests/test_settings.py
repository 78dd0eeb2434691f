"""Settings from the environment: defaults, the generated secret, validation, secrecy."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from service.errors import ConfigError
from service.metrics import DEFAULT_LATENCY_BUCKETS, Metrics
from service.settings import Settings, mask_url

TOKEN = "admin-token-0123456789-SECRET"
SECRET = "server-secret-0123456789-SECRET"


def test_defaults(tmp_path: Path) -> None:
    s = Settings.from_env({"AIM_STATE_DIR": str(tmp_path / "state")})
    assert s.redis_url is None and s.admin_token is None
    assert s.admin_token is None
    # /metrics is never open: without AIM_METRICS_TOKEN a token is generated once into the state dir.
    token_file = tmp_path / "state" / "metrics_token"
    assert s.metrics_token == token_file.read_text().strip() and len(s.metrics_token) >= 32
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert Settings.from_env({"AIM_STATE_DIR": str(tmp_path / "state")}).metrics_token == s.metrics_token
    assert s.state_dir == tmp_path / "state"
    assert (s.max_batch_size, s.max_wait_ms, s.queue_size) == (32, 5.0, 256)
    assert (s.max_body_bytes, s.key_cache_ttl_s, s.redis_grace_s) == (8 * 1024 * 1024, 5.0, 60.0)


def test_default_state_dir_is_dot_aimserve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the process's working directory, not a service boundary
    s = Settings.from_env({})
    assert s.state_dir == Path(".aimserve")
    assert (tmp_path / ".aimserve" / "secret").is_file()


def test_secret_generated_once_private_and_reused(tmp_path: Path) -> None:
    env = {"AIM_STATE_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    path = tmp_path / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret) >= 32
    assert Settings.from_env(env).secret == first.secret  # a restart keeps it
    other = Settings.from_env({"AIM_STATE_DIR": str(tmp_path / "elsewhere")})
    assert other.secret != first.secret


def test_secret_from_env_is_used_and_no_file_is_written(tmp_path: Path) -> None:
    s = Settings.from_env({"AIM_STATE_DIR": str(tmp_path), "AIM_SECRET": SECRET})
    assert s.secret == SECRET.encode()
    assert not (tmp_path / "secret").exists()


def test_a_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    Settings.from_env({"AIM_STATE_DIR": str(tmp_path)})
    (tmp_path / "secret").chmod(0o644)
    with pytest.raises(ConfigError, match="must be 600"):
        Settings.from_env({"AIM_STATE_DIR": str(tmp_path)})


def test_full_environment(tmp_path: Path) -> None:
    env = {
        "REDIS_URL": "redis://:pw-SECRET@redis.internal:6379/2",
        "AIM_STATE_DIR": str(tmp_path),
        "AIM_ADMIN_TOKEN": TOKEN,
        "AIM_SECRET": SECRET,
        "AIM_METRICS_TOKEN": "metrics-SECRET",
        "AIM_MAX_BATCH_SIZE": "8",
        "AIM_MAX_WAIT_MS": "2.5",
        "AIM_QUEUE_SIZE": "100",
        "AIM_MAX_BODY_BYTES": "65536",
        "AIM_KEY_CACHE_TTL_S": "1",
        "AIM_REDIS_GRACE_S": "0",
    }
    s = Settings.from_env(env)
    assert s.redis_url == env["REDIS_URL"]
    assert (s.admin_token, s.metrics_token) == (TOKEN, "metrics-SECRET")
    assert (s.max_batch_size, s.max_wait_ms, s.queue_size, s.max_body_bytes) == (8, 2.5, 100, 65536)
    assert (s.key_cache_ttl_s, s.redis_grace_s) == (1.0, 0.0)
    for text in (repr(s), str(s)):
        assert "SECRET" not in text
        assert "admin_token=<set>" in text and "redis.internal" in text


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("AIM_MAX_BATCH_SIZE", "0", "AIM_MAX_BATCH_SIZE='0' is out of range"),
        ("AIM_MAX_BATCH_SIZE", "eight", "AIM_MAX_BATCH_SIZE='eight' is not an integer"),
        ("AIM_MAX_WAIT_MS", "-1", "AIM_MAX_WAIT_MS='-1' is out of range"),
        ("AIM_MAX_WAIT_MS", "nan", "AIM_MAX_WAIT_MS='nan' is out of range"),
        ("AIM_QUEUE_SIZE", "1.5", "AIM_QUEUE_SIZE='1.5' is not an integer"),
        ("AIM_MAX_BODY_BYTES", "10", "AIM_MAX_BODY_BYTES='10' is out of range"),
        ("AIM_KEY_CACHE_TTL_S", "soon", "AIM_KEY_CACHE_TTL_S='soon' is not a number"),
        ("AIM_REDIS_GRACE_S", "inf", "AIM_REDIS_GRACE_S='inf' is out of range"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL='localhost:6379' must start with one of"),
    ],
)
def test_bad_values_name_the_variable_and_value(tmp_path: Path, name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AIM_STATE_DIR": str(tmp_path), name: value})
    assert fragment in caught.value.message


@pytest.mark.parametrize("name", ["AIM_SECRET", "AIM_ADMIN_TOKEN"])
@pytest.mark.parametrize("value", ["short-zq7x", "has space zq7x-0123456789", "ctl\x01zq7x-0123456789"])
def test_bad_secrets_are_named_but_never_echoed(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AIM_STATE_DIR": str(tmp_path), name: value})
    assert name in caught.value.message
    assert "zq7x" not in caught.value.message and "zq7x" not in repr(caught.value)


def test_redis_url_passwords_are_masked() -> None:
    assert mask_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert mask_url("unix:///tmp/r.sock?db=0&password=pw") == "unix:///tmp/r.sock?db=0&password=***"
    assert mask_url("redis://h:1/0") == "redis://h:1/0"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REDIS_URL": "http://:pw-SECRET@h/"})
    assert "SECRET" not in caught.value.message


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    s = Settings.from_env(
        {"AIM_STATE_DIR": str(tmp_path), "REDIS_URL": "", "AIM_ADMIN_TOKEN": "", "AIM_MAX_BATCH_SIZE": ""}
    )
    assert (s.redis_url, s.admin_token, s.max_batch_size) == (None, None, 32)


def test_engine_is_builtin_unless_chosen(tmp_path: Path) -> None:
    base = {"AIM_STATE_DIR": str(tmp_path)}
    assert Settings.from_env(base).engine == "builtin"
    assert Settings.from_env({**base, "AIM_ENGINE": "vllm"}).engine == "vllm"
    with pytest.raises(ConfigError, match=r"AIM_ENGINE='tgi' is not an engine; choose one of builtin, vllm"):
        Settings.from_env({**base, "AIM_ENGINE": "tgi"})


def test_latency_buckets_reach_the_metrics(tmp_path: Path) -> None:
    env = {"AIM_STATE_DIR": str(tmp_path)}
    assert Settings.from_env(env).latency_buckets is None
    s = Settings.from_env({**env, "AIM_LATENCY_BUCKETS": "0.05, 0.5,5"})
    assert s.latency_buckets == (0.05, 0.5, 5.0)
    assert Metrics(CollectorRegistry(), s.latency_buckets).latency_buckets == (0.05, 0.5, 5.0)
    assert Metrics(CollectorRegistry(), None).latency_buckets == DEFAULT_LATENCY_BUCKETS
    for bad in ("0.5,0.1", "fast", "0,1", ","):
        with pytest.raises(ConfigError, match="AIM_LATENCY_BUCKETS"):
            Settings.from_env({**env, "AIM_LATENCY_BUCKETS": bad})
