"""Server processes for the HTTP benchmark: start one, wait until it answers, create a tenant, stop it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(cmd: list[str], port: int, env: dict[str, str], log: Path | None) -> Server:
    """Start ``cmd`` (REDIS_URL removed from its environment) without waiting for it."""
    environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | env
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    return Server(subprocess.Popen(cmd, env=environ, stdout=out, stderr=subprocess.STDOUT), port, log)


def wait_listening(server: Server, timeout_s: float = 300.0) -> Server:
    """Wait until the server's port accepts connections; stop it and raise when it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            detail = server.log.read_text()[-2000:] if server.log is not None else ""
            raise RuntimeError(f"{server.proc.args!r} exited with {server.proc.returncode}: {detail}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.2)
    stop(server)
    raise TimeoutError(f"{server.proc.args!r} did not listen on {server.port} within {timeout_s:.0f} s")


def stop(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


def new_tenant(port: int, admin_token: str, tier: str) -> str:
    """A new tenant's API key, through the admin API (retried while the service finishes starting)."""
    body = json.dumps({"name": "bench", "tier": tier}).encode()
    headers = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"}
    for _ in range(100):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/tenants", body, headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return str(json.loads(r.read())["api_key"])
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise TimeoutError("could not create a bench tenant")
