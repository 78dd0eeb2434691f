"""deploy/prometheus/rules.yml: valid rules, and the fidelity drift alert fires exactly where it should."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .common import REPO, prometheus_config

RULES = REPO / "deploy" / "prometheus" / "rules.yml"
UNIT_TEST = Path(__file__).with_name("fidelity_rules_test.yml")
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian's prometheus package)"
)


def test_prometheus_loads_the_rules_file_beside_it():
    assert prometheus_config()["rule_files"] == ["rules.yml"]
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    alert = next(r for r in group["rules"] if r.get("alert") == "AimTierFidelityDrift")
    assert "aim_tier_target_fidelity" in alert["expr"] and "> 0.03" in alert["expr"]


@needs_promtool
def test_promtool_accepts_the_rules():
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_drift_alert_fires_for_a_drifting_busy_tier_only():
    """free drifts 10 points on 1,000 rows/min: fires after 15 min; standard (1 point) and quiet (few rows)
    never do (promtool's rule unit test, with its own synthetic series)."""
    done = subprocess.run(["promtool", "test", "rules", str(UNIT_TEST)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
