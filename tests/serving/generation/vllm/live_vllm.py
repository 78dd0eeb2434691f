"""One real vLLM behind the gateway for the whole test session (CPU build, float32, --enforce-eager, the
smollm2 preset), supervised by the gateway exactly as `aimserve serve --engine vllm` does: conftest.py's
``svc`` fixture, and the helpers the vLLM tests share.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx

from service.serving.generation.admission import Admitted
from service.serving.generation.vllm.engine import VllmEngine
from service.store import EmbeddedRedis
from tests.live import LiveService, state_dir, wait_for
from tests.serving.generation.vllm.test_processor import vllm_python

TIERS = """\
default_tier: free
tiers:
  premium:
    sigma: 0.0
    priority: 2
    rate_limit: {requests_per_minute: 6000}
    focus: {allowed: true, max_strength: 8.0}
  free:
    sigma: 1.5
    rate_limit: {requests_per_minute: 6000}
    focus: {allowed: false}
  parity:
    sigma: 1.0
    rate_limit: {requests_per_minute: 6000}
    focus: {allowed: false}
"""
START_S = 900.0
PROMPT = "Once upon a time, in a small village by the sea,"
LONG = "Count from one to two hundred in words: one, two, three,"


def serve_on_vllm(tmp: Path) -> Iterator[LiveService]:
    """The gateway on its supervised vLLM, ready, until the generator is closed (tiers: `TIERS`)."""
    python = vllm_python()
    from service.presets import build_preset

    build_preset("smollm2-135m", state_dir())
    (tmp / "tiers.yaml").write_text(TIERS)
    redis = EmbeddedRedis(tmp / "redis")
    redis.start()
    env = {"AIM_ENGINE": "vllm", "AIM_VLLM_PYTHON": str(python), "AIM_MAX_BATCH_SIZE": "16"}
    # Every request feeds the traffic sample here (test_parity.py compares it with the built-in engine's).
    os.environ.update(AIM_VLLM_PYTHON=str(python), AIM_VLLM_STALL_S="30", AIM_VLLM_SAMPLE_SHARE="1")
    service = LiveService("smollm2-135m", tmp / "tiers.yaml", redis.url, env=env).start()
    try:
        with httpx.Client(base_url=service.url) as c:
            assert c.get("/readyz").status_code == 503  # vLLM is still starting
            assert wait_for(lambda: c.get("/readyz").status_code == 200, START_S), "vLLM did not start"
        yield service
    finally:
        service.stop()
        redis.stop()


def engine(svc: LiveService) -> VllmEngine:
    generator = svc.components.engine  # type: ignore[union-attr]
    assert isinstance(generator, Admitted) and isinstance(generator.engine, VllmEngine)
    return generator.engine


def generate(svc: LiveService, key: str, body: dict) -> dict:
    with svc.client(key, timeout=300) as c:
        r = c.post("/v1/generate", json={"max_new_tokens": 24, **body})
        assert r.status_code == 200, r.text
        return r.json()
