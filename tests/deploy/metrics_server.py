"""A small HTTP server exposing a real `Metrics` registry on /metrics, optionally behind a bearer token,
plus a traffic driver that calls every `Metrics` method for two tiers at a steady pace.

Used to test the Prometheus harness and the dashboard's PromQL before (and independently of) the web app.
The driver's ratios are fixed so a test can check what Prometheus computes from them.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from service.metrics import CONTENT_TYPE, Metrics

#: Per tick: fidelity matches of 10 rows, feedback labels correct out of 10, 5xx answers out of 10.
TRAFFIC = {
    "free": {"matches": 7, "correct": 5, "errors": 1, "latency": 0.02, "sigma": 1.3},
    "premium": {"matches": 10, "correct": 9, "errors": 0, "latency": 0.2, "sigma": 0.0},
}

#: Promised fidelity per tier (premium has none): free measures 0.7, so it drifts 0.05 below its target.
TARGETS = {"free": 0.75}


class MetricsServer:
    """Serves ``metrics.render()`` on ``http://127.0.0.1:<port>/metrics``; 401 without ``Bearer <token>``."""

    def __init__(self, metrics: Metrics, token: str | None = None) -> None:
        self.metrics = metrics
        self.token = token
        self.rejected = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                if outer.token is not None and self.headers.get("Authorization") != f"Bearer {outer.token}":
                    outer.rejected += 1
                    self.send_error(401)
                    return
                body = outer.metrics.render()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class TrafficDriver:
    """Calls every `Metrics` method for the tiers of `TRAFFIC` every ``period`` seconds until stopped."""

    def __init__(self, metrics: Metrics, period: float = 0.05) -> None:
        self.metrics = metrics
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        metrics.set_model_info("test-model", "text-generation", "cpu", "float32")
        metrics.set_tiers({tier: float(spec["sigma"]) for tier, spec in TRAFFIC.items()})
        metrics.set_tier_targets(TARGETS)
        metrics.count_tier_reload("ok")

    def tick(self, n: int) -> None:
        """One round: 10 rows, 10 feedback labels, 10 requests per tier, plus batch, generation and Redis."""
        m = self.metrics
        for tier, spec in TRAFFIC.items():
            m.count_fidelity(tier, int(spec["matches"]), 10)
            for i in range(10):
                m.count_feedback(tier, i < spec["correct"])
                status = 503 if i < spec["errors"] else 200
                m.observe_request(tier, "/v1/generate", status, float(spec["latency"]))
            m.observe_queue_wait(tier, 0.004)
            m.observe_tokens(tier, 8)
            m.observe_ttft(tier, 0.15)
            m.observe_inter_token(tier, 0.03)
        m.observe_batch(4)
        m.observe_forward("text-generation", 0.03)
        m.set_queue_depth(n % 5)
        m.observe_redis("resolve_key", 0.0004)
        if n % 20 == 0:
            m.count_redis_error("resolve_key")

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.period):
            self.tick(n)
            n += 1

    def __enter__(self) -> TrafficDriver:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
