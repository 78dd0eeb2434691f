"""Service settings, read once from the environment and checked at the edge.

Variables (the contract's five, then serving knobs):

- ``REDIS_URL``: ``redis://``, ``rediss://`` or ``unix://`` URL; unset or empty -> an embedded Redis.
- ``AIM_STATE_DIR``: local state (embedded Redis data, generated secret); default ``.aimserve/``.
- ``AIM_ADMIN_TOKEN``: bearer token of the admin API, at least 16 characters; unset -> admin API off.
- ``AIM_SECRET``: keys the API-key hashes and the noise, at least 16 characters. Unset -> 32 random bytes
  generated once with :mod:`secrets` and kept in ``<state_dir>/secret`` (mode 0600), reused on restart.
- ``AIM_METRICS_TOKEN``: bearer token for ``/metrics`` (operators only: per-tier fidelity counts would tell a
  tenant whether its answer equals the full model's). Unset -> a random token generated once and kept in
  ``<state_dir>/metrics_token`` (mode 0600), reused on restart; ``/metrics`` is never open.
- ``AIM_MAX_BATCH_SIZE`` (rows, default 32), ``AIM_MAX_WAIT_MS`` (batching delay, default 5 ms),
  ``AIM_QUEUE_SIZE`` (waiting requests before 503, default 256), ``AIM_MAX_BODY_BYTES`` (default 8 MiB),
  ``AIM_KEY_CACHE_TTL_S`` (local key cache, default 5 s), ``AIM_REDIS_GRACE_S`` (how long cached
  tenants are served while Redis is down, default 60 s), ``AIM_REDIS_TIMEOUT_MS`` (bound of every Redis
  call: connect, read, retry; default 250 ms), ``AIM_REDIS_POOL_SIZE`` (Redis calls in flight at once,
  default 64), ``AIM_REDIS_POOL_WAIT_MS`` (how long a call waits for a free one, default 1000 ms),
  ``AIM_LATENCY_BUCKETS`` (comma-separated upper bounds in seconds of every latency histogram; default
  `service.metrics.DEFAULT_LATENCY_BUCKETS`).
- ``AIM_ENGINE``: the text-generation engine, ``builtin`` (transformers in this process, the default) or
  ``vllm`` (a vLLM server; see docs/deployment.md); ``aimserve serve --engine`` overrides it.
  tenants are served while Redis is down, default 60 s).
- Scheduling and admission: ``AIM_TENANT_MAX_ROWS`` (one tenant's inputs queued or running at once, and
  so the most inputs one request may have, default 64), ``AIM_MAX_REQUEST_TOKENS`` (a text request's
  total tokens after truncation, default 4096), ``AIM_MAX_REQUEST_PIXELS`` (an image request's total
  pixels, default 4096 x 4096), ``AIM_MAX_QUEUE_WAIT_S`` (a request whose expected queue wait exceeds
  this is refused at once with 503, default 2 s), ``AIM_SHUTDOWN_GRACE_S`` (after SIGTERM, how long
  running requests and streams may finish before they end with ``shutting_down``, default 20 s).

Every problem raises :class:`ConfigError` naming the variable and the bad value; the values of
``AIM_SECRET``, ``AIM_ADMIN_TOKEN`` and ``AIM_METRICS_TOKEN`` are never echoed, and ``repr`` shows only
whether they are set.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from service.errors import ConfigError
from service.limits import MAX_BODY_BYTES
from service.metrics import parse_buckets
from service.store.connection import DEFAULT_SLOT_WAIT_S, DEFAULT_SLOTS, DEFAULT_TIMEOUT_S

EngineName = Literal["builtin", "vllm"]
ENGINES: tuple[EngineName, ...] = ("builtin", "vllm")

MIN_SECRET_CHARS = 16
SECRET_FILE = "secret"
METRICS_TOKEN_FILE = "metrics_token"
_URL_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class Settings:
    """The validated configuration. Build it with :meth:`from_env`; fields are trusted afterwards."""

    redis_url: str | None
    state_dir: Path
    secret: bytes = field(repr=False)
    admin_token: str | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    queue_size: int = 256
    max_body_bytes: int = MAX_BODY_BYTES
    key_cache_ttl_s: float = 5.0
    redis_grace_s: float = 60.0
    engine: EngineName = "builtin"
    redis_timeout_s: float = DEFAULT_TIMEOUT_S
    redis_pool_size: int = DEFAULT_SLOTS
    redis_pool_wait_s: float = DEFAULT_SLOT_WAIT_S
    latency_buckets: tuple[float, ...] | None = None  # None: the metrics' defaults
    tenant_max_rows: int = 64
    max_request_tokens: int = 4096
    max_request_pixels: int = 4096 * 4096
    max_queue_wait_s: float = 2.0
    shutdown_grace_s: float = 20.0

    def __repr__(self) -> str:
        # Only the presence of a secret is shown; a Redis URL can hold a password, so it is masked too.
        return (
            f"Settings(redis_url={mask_url(self.redis_url)!r}, state_dir={str(self.state_dir)!r}, "
            f"secret=<hidden>, admin_token={_presence(self.admin_token)}, "
            f"metrics_token={_presence(self.metrics_token)}, max_batch_size={self.max_batch_size}, "
            f"max_wait_ms={self.max_wait_ms}, queue_size={self.queue_size}, "
            f"max_body_bytes={self.max_body_bytes}, key_cache_ttl_s={self.key_cache_ttl_s}, "
            f"redis_grace_s={self.redis_grace_s}, redis_timeout_s={self.redis_timeout_s}, "
            f"redis_pool_size={self.redis_pool_size}, redis_pool_wait_s={self.redis_pool_wait_s}, "
            f"latency_buckets={self.latency_buckets}, "
            f"engine={self.engine!r}, tenant_max_rows={self.tenant_max_rows}, "
            f"max_request_tokens={self.max_request_tokens}, max_request_pixels={self.max_request_pixels}, "
            f"max_queue_wait_s={self.max_queue_wait_s}, shutdown_grace_s={self.shutdown_grace_s})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable of ``environ`` (default ``os.environ``).

        May create ``AIM_STATE_DIR`` and ``<state_dir>/secret``. Raises :class:`ConfigError`.
        """
        env = os.environ if environ is None else environ
        state_dir = Path(_opt(env, "AIM_STATE_DIR") or ".aimserve")
        secret_text = _opt(env, "AIM_SECRET")
        if secret_text is not None:
            _check_token(env, "AIM_SECRET")
            secret = secret_text.encode()
        else:
            secret = load_or_create_secret(state_dir)
        return cls(
            redis_url=_redis_url(env),
            state_dir=state_dir,
            secret=secret,
            admin_token=_check_token(env, "AIM_ADMIN_TOKEN"),
            metrics_token=_check_token(env, "AIM_METRICS_TOKEN", min_chars=1)
            or load_or_create_secret(state_dir, METRICS_TOKEN_FILE).decode(),
            max_batch_size=_int(env, "AIM_MAX_BATCH_SIZE", 32, lo=1, hi=4096),
            max_wait_ms=_float(env, "AIM_MAX_WAIT_MS", 5.0, lo=0.0, hi=10_000.0),
            queue_size=_int(env, "AIM_QUEUE_SIZE", 256, lo=1, hi=1_000_000),
            max_body_bytes=_int(env, "AIM_MAX_BODY_BYTES", MAX_BODY_BYTES, lo=1024, hi=1 << 30),
            key_cache_ttl_s=_float(env, "AIM_KEY_CACHE_TTL_S", 5.0, lo=0.0, hi=300.0),
            redis_grace_s=_float(env, "AIM_REDIS_GRACE_S", 60.0, lo=0.0, hi=86_400.0),
            redis_timeout_s=_float(
                env, "AIM_REDIS_TIMEOUT_MS", DEFAULT_TIMEOUT_S * 1000, lo=10.0, hi=10_000.0
            )
            / 1000,
            redis_pool_size=_int(env, "AIM_REDIS_POOL_SIZE", DEFAULT_SLOTS, lo=1, hi=10_000),
            redis_pool_wait_s=_float(
                env, "AIM_REDIS_POOL_WAIT_MS", DEFAULT_SLOT_WAIT_S * 1000, lo=0.0, hi=60_000.0
            )
            / 1000,
            engine=parse_engine(_opt(env, "AIM_ENGINE") or "builtin", "AIM_ENGINE"),
            latency_buckets=_buckets(env, "AIM_LATENCY_BUCKETS"),
            tenant_max_rows=_int(env, "AIM_TENANT_MAX_ROWS", 64, lo=1, hi=1_000_000),
            max_request_tokens=_int(env, "AIM_MAX_REQUEST_TOKENS", 4096, lo=1, hi=1 << 30),
            max_request_pixels=_int(env, "AIM_MAX_REQUEST_PIXELS", 4096 * 4096, lo=1, hi=1 << 40),
            max_queue_wait_s=_float(env, "AIM_MAX_QUEUE_WAIT_S", 2.0, lo=0.001, hi=3600.0),
            shutdown_grace_s=_float(env, "AIM_SHUTDOWN_GRACE_S", 20.0, lo=0.0, hi=3600.0),
        )


def parse_engine(value: str, name: str) -> EngineName:
    """``value`` as an engine name; ``name`` (the variable or option) names it in the error."""
    for engine in ENGINES:
        if value == engine:
            return engine
    raise ConfigError(f"{name}={value!r} is not an engine; choose one of {', '.join(ENGINES)}")


def load_or_create_secret(state_dir: Path, name: str = SECRET_FILE) -> bytes:
    """Return the secret kept in ``<state_dir>/<name>``, creating it (0600, 32 random bytes) if absent.

    Creation uses ``O_EXCL`` so two processes starting together agree on one secret. An existing file
    readable by group or others is refused rather than trusted.
    """
    path = state_dir / name
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    except OSError as exc:
        raise ConfigError(f"AIM_STATE_DIR={str(state_dir)!r}: cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} has mode {mode:o}; it holds the server secret and must be 600 (chmod 600)")
    value = path.read_text().strip()
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"{path} holds a secret shorter than {MIN_SECRET_CHARS} characters")
    return value.encode()


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None


def _check_token(env: Mapping[str, str], name: str, min_chars: int = MIN_SECRET_CHARS) -> str | None:
    # The value is a secret: messages give its length, never its content.
    value = _opt(env, name)
    if value is None:
        return None
    if len(value) < min_chars:
        raise ConfigError(f"{name} must be at least {min_chars} characters (got {len(value)})")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(f"{name} must not contain spaces or control characters")
    return value


def _redis_url(env: Mapping[str, str]) -> str | None:
    url = _opt(env, "REDIS_URL")
    if url is not None and not url.startswith(_URL_SCHEMES):
        raise ConfigError(
            f"REDIS_URL={mask_url(url)!r} must start with one of {', '.join(_URL_SCHEMES)} (or be unset)"
        )
    return url


def _int(env: Mapping[str, str], name: str, default: int, *, lo: int, hi: int) -> int:
    raw = _opt(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r} is out of range [{lo}, {hi}]")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, lo: float, hi: float) -> float:
    raw = _opt(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r} is out of range [{lo}, {hi}]")
    return value


def _buckets(env: Mapping[str, str], name: str) -> tuple[float, ...] | None:
    raw = _opt(env, name)
    return None if raw is None else parse_buckets(raw, setting=name)


def _presence(value: str | None) -> str:
    return "<set>" if value is not None else "None"


def mask_url(url: str | None) -> str | None:
    """Hide the password of a Redis URL (``user:pw@`` and ``?password=``) so the URL can be logged."""
    if url is None:
        return None
    url = re.sub(r"(?i)(password=)[^&]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0] if ":" in creds else creds
    return f"{scheme}{sep}{user}:***@{host}"
