"""A real service for tests: the app under uvicorn on a loopback port, in a background thread.

`LiveService` starts exactly what `aimserve serve` starts (`build_components` in the app's lifespan) with a
test Redis, a real model and its own metrics registry, and stops it cleanly.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from service.api.app import create_app
from service.api.builder import build_components
from service.api.components import Components
from service.presets import build_preset
from service.settings import Settings
from service.store import EmbeddedRedis

REPO = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token-0123456789"
SECRET = "test-secret-0123456789abcdef"
METRICS_TOKEN = "test-metrics-token-0123456789"


def state_dir() -> Path:
    """Where presets are built and cached across test runs (AIM_STATE_DIR or <repo>/.aimserve)."""
    return Path(os.environ.get("AIM_STATE_DIR", REPO / ".aimserve"))


def wait_for(check: Callable[[], object], timeout_s: float = 10.0) -> bool:
    """Poll ``check`` every 0.1 s until it returns something truthy; False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def escaped_json(body: object) -> dict[str, Any]:
    """Keyword arguments for an httpx request whose JSON text escapes every non-ASCII character, so a lone
    surrogate travels as ``\\ud800`` (httpx's ``json=`` would fail to encode it)."""
    content = json.dumps(body, ensure_ascii=True).encode()
    return {"content": content, "headers": {"Content-Type": "application/json"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveService:
    def __init__(self, model: str, tiers: Path, redis_url: str, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {
            "REDIS_URL": redis_url,
            "AIM_STATE_DIR": str(state_dir()),
            "AIM_ADMIN_TOKEN": ADMIN_TOKEN,
            "AIM_SECRET": SECRET,
            "AIM_METRICS_TOKEN": METRICS_TOKEN,
            **(env or {}),
        }
        self.settings = Settings.from_env(environ)
        self.components: Components | None = None

        @asynccontextmanager
        async def factory() -> AsyncIterator[Components]:
            async with build_components(self.settings, tiers, model=model) as components:
                self.components = components
                yield components

        app = create_app(factory, max_body_bytes=self.settings.max_body_bytes)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def start(self, timeout_s: float = 120.0) -> LiveService:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the service failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("the service did not start in time")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, **{"timeout": 60.0, **kwargs})

    def admin(self) -> httpx.Client:
        return self.client(ADMIN_TOKEN)

    def metrics(self) -> str:
        """The /metrics text, read with the operator's metrics token."""
        with self.client(METRICS_TOKEN) as c:
            r = c.get("/metrics")
            r.raise_for_status()
            return r.text

    def new_tenant(self, tier: str, name: str = "t") -> tuple[str, str]:
        """(tenant id, api key) of a new tenant created through the admin API."""
        with self.admin() as c:
            r = c.post("/admin/tenants", json={"name": name, "tier": tier})
            r.raise_for_status()
            body = r.json()
        return body["tenant"]["id"], body["api_key"]


def serve_preset(name: str, redis: EmbeddedRedis, tiers: Path) -> Iterator[LiveService]:
    """Build (cached) the preset ``name`` and serve it until the generator is closed."""
    build_preset(name, state_dir())
    service = LiveService(name, tiers, redis.url).start()
    yield service
    service.stop()
