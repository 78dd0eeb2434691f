"""Schemathesis (`--checks all`) over the live OpenAPI document of a classifier and of an LLM service.

Each run is bounded in time (`FUZZ_SECONDS`), seeded, and must end with no failure: no server error, no
status, header, content type or body the document does not declare, no schema-valid body refused as a
schema violation, no schema-violating body accepted. The config and hooks are beside this file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.presets import build_preset
from service.store import EmbeddedRedis
from tests.live import ADMIN_TOKEN, REPO, LiveService, state_dir

FUZZ_SECONDS = 25
CONFIG = Path(__file__).with_name("schemathesis.toml")
# One tier without a rate limit, so the run spends its time on the routes rather than on 429s.
TIERS = """\
default_tier: fuzz
tiers:
  fuzz:
    sigma: 1.0
    focus: {allowed: true, max_strength: 3.0}
"""
# The LLM run covers what only generation exercises; the classifier run covers every route.
LLM_PATHS = r"^/v1/(generate|completions|chat/completions|me/focus)$"


@pytest.fixture(scope="module")
def fuzz_tiers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "tiers.yaml"
    path.write_text(TIERS)
    return path


def _serve(preset: str, redis: EmbeddedRedis, tiers: Path) -> Iterator[LiveService]:
    build_preset(preset, state_dir())
    service = LiveService(preset, tiers, redis.url).start()
    yield service
    service.stop()


def _fuzz(service: LiveService, *extra: str) -> int:
    """Run schemathesis against ``service``; the number of cases that passed (the run must not fail)."""
    _, key = service.new_tenant("fuzz", "fuzzer")
    env = {
        **os.environ,
        "AIM_FUZZ_TENANT_KEY": key,
        "AIM_FUZZ_ADMIN_TOKEN": ADMIN_TOKEN,
        "PYTHONPATH": str(REPO),
    }
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color"),
        *("run", f"{service.url}/openapi.json", "--checks", "all", "--seed", "20250428"),
        *("--max-time", str(FUZZ_SECONDS), "--workers", "1", "--request-timeout", "120", *extra),
    ]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts is not None, output[-5000:]
    return int(counts[2])


def test_classifier_openapi_has_no_failures(
    redis_server: EmbeddedRedis, sentiment_preset: str, fuzz_tiers: Path
) -> None:
    for service in _serve(sentiment_preset, redis_server, fuzz_tiers):
        assert _fuzz(service) >= 200  # ~1,000 cases in 30 s at load 12


def test_llm_openapi_has_no_failures(redis_server: EmbeddedRedis, fuzz_tiers: Path) -> None:
    for service in _serve("smollm2-135m", redis_server, fuzz_tiers):
        assert _fuzz(service, "--include-path-regex", LLM_PATHS) >= 20  # each case is a generation
