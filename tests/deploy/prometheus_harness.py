"""A real Prometheus server for tests, configured from the repo's deploy/prometheus/prometheus.yml.

It installs nothing: `find_prometheus` locates the binary (Debian's ``prometheus`` package, which
``make test`` installs when missing) and tests skip when it is absent. The harness

- derives a config from the repo's: the ``aimserve`` job only, its target replaced by ``target``
  (``host:port``), scrape and evaluation interval ``scrape_interval`` (default 1 s), the bearer token file
  replaced by a temp file holding ``metrics_token`` (empty when None, as docker-compose.yml writes it when
  AIM_METRICS_TOKEN is unset);
- starts ``prometheus`` on a free loopback port with a temp storage directory, waits until ``/-/ready``;
- answers PromQL through ``/api/v1/query``; stops the process (SIGTERM, then SIGKILL) and removes its files.

Prometheus 2.x applies service discovery results at most every 5 s, so the first scrape lands ~5 s after
start: use `wait_for_target` before expecting data.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
JOB = "aimserve"

Result = list[dict[str, Any]]


class PrometheusError(RuntimeError):
    """Prometheus failed to start, rejected a query, or did not reach the expected state in time."""


def find_prometheus() -> str | None:
    """Path of the ``prometheus`` binary, or None when it is not installed."""
    found = shutil.which("prometheus")
    if found:
        return found
    debian = Path("/usr/bin/prometheus")
    return str(debian) if debian.is_file() else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def derive_config(
    base: dict[str, Any], target: str | Sequence[str], scrape_interval: str, credentials_file: Path
) -> dict[str, Any]:
    """``base`` reduced to its aimserve job: ``target``(s) every ``scrape_interval``, token from the file."""
    jobs = [job for job in base.get("scrape_configs", []) if job.get("job_name") == JOB]
    if len(jobs) != 1:
        raise PrometheusError(f"{PROMETHEUS_CONFIG} must define exactly one scrape job named {JOB!r}")
    job = dict(jobs[0])
    for key in ("scrape_interval", "scrape_timeout", "dns_sd_configs", "file_sd_configs"):
        job.pop(key, None)
    job["static_configs"] = [{"targets": [target] if isinstance(target, str) else list(target)}]
    if "authorization" in job:
        job["authorization"] = {**job["authorization"], "credentials_file": str(credentials_file)}
    interval = {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval}
    return {"global": {**interval, "scrape_timeout": scrape_interval}, "scrape_configs": [job]}


class PrometheusHarness:
    """One Prometheus process scraping ``target``; a context manager, or call `start` once and `stop`."""

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        metrics_token: str | None = None,
        scrape_interval: str = "1s",
        config_path: Path = PROMETHEUS_CONFIG,
        binary: str | None = None,
    ) -> None:
        found = binary or find_prometheus()
        if found is None:
            raise PrometheusError("the prometheus binary is not installed (apt-get install prometheus)")
        self.binary = found
        self.target = target
        self.metrics_token = metrics_token
        self.scrape_interval = scrape_interval
        self.config_path = config_path
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(timeout=10.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self, workdir: Path) -> Path:
        token_file = workdir / "metrics_token"
        token_file.write_text(self.metrics_token or "")
        base = yaml.safe_load(self.config_path.read_text())
        config = derive_config(base, self.target, self.scrape_interval, token_file)
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self, timeout: float = 30.0) -> None:
        """Start Prometheus, wait until it reports ready; on failure raise `PrometheusError` with its log."""
        self._dir = tempfile.TemporaryDirectory(prefix="aim-prometheus-")
        workdir = Path(self._dir.name)
        config = self._write_config(workdir)
        self.port = free_port()
        args = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with (workdir / "prometheus.log").open("wb") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._until(self._ready, timeout, "Prometheus to report ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise PrometheusError(f"prometheus exited with {self._proc.returncode}: {self.log_tail()}")
        try:
            return self._client.get(f"{self.url}/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def log_tail(self, chars: int = 2000) -> str:
        """The end of Prometheus' own log (for failure messages)."""
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "prometheus.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def targets(self) -> Result:
        """The active scrape targets as ``/api/v1/targets`` reports them (``health``, ``lastError`` ...)."""
        body = self._client.get(f"{self.url}/api/v1/targets").json()
        return list(body["data"]["activeTargets"])

    def wait_for_target(self, timeout: float = 30.0) -> None:
        """Wait until every target has been scraped successfully (``health == "up"``)."""
        wanted = 1 if isinstance(self.target, str) else len(self.target)

        def all_up() -> bool:
            return sum(t["health"] == "up" for t in self.targets()) >= wanted

        self._until(all_up, timeout, f"{self.target} up")

    def query(self, promql: str) -> Result:
        """Instant query at now: the result vector (a scalar comes back as one sample without labels)."""
        response = self._client.get(f"{self.url}/api/v1/query", params={"query": promql})
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def wait_for(
        self, promql: str, timeout: float = 30.0, accept: Callable[[Result], bool] | None = None
    ) -> Result:
        """Poll `query` until it returns a non-empty result that ``accept`` (if given) accepts."""
        found: Result = []

        def ok() -> bool:
            nonlocal found
            found = self.query(promql)
            return bool(found) and (accept is None or accept(found))

        self._until(ok, timeout, f"data for {promql!r}")
        return found

    def _until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"timed out after {timeout:.0f} s waiting for {what}: {self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM, SIGKILL after 10 s) and remove its config and storage."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self._client.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PrometheusHarness:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
