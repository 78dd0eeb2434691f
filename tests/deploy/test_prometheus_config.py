"""deploy/prometheus/prometheus.yml: parses, scrapes the service's /metrics, passes promtool's check."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from .common import REPO, exposed_port, prometheus_config
from .prometheus_harness import JOB


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit):
            return float(duration.removesuffix(unit)) * units[unit]
    raise ValueError(duration)


def test_config_scrapes_the_service_metrics_with_a_bearer_token_file():
    config = prometheus_config()
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    assert job["metrics_path"] == "/metrics" and job["scheme"] == "http"
    assert job["static_configs"][0]["targets"] == [f"aimserve:{exposed_port()}"]
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"].startswith("/")
    assert seconds(config["global"]["scrape_timeout"]) <= seconds(config["global"]["scrape_interval"])


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian's prometheus package)"
)
def test_promtool_accepts_the_config(tmp_path):
    config = prometheus_config()
    # promtool checks that the credentials file exists; compose writes it at start, a temp file stands in.
    token = tmp_path / "metrics_token"
    token.write_text("")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(token)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "rules.yml").write_text((REPO / "deploy" / "prometheus" / "rules.yml").read_text())
    done = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
