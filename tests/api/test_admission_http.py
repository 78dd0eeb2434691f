"""Admission against the real sentiment service: permanent limits are 413, the compute budget holds,
abandoned rows never reach the model, and an overloaded server refuses before any preparation."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.store import EmbeddedRedis
from tests.live import LiveService, wait_for

LONG = "a fine and thoughtful film, " * 150  # about 900 tokens: truncated to the model's 512
SHORT = "I loved it."


@pytest.fixture(scope="module")
def patient(redis_server: EmbeddedRedis, sentiment_preset: str, module_tiers: Path) -> Iterator[LiveService]:
    """A 48-row queue that never refuses by expected wait, so queueing behaviour can be observed."""
    env = {"AIM_MAX_QUEUE_WAIT_S": "600", "AIM_QUEUE_SIZE": "48"}
    service = LiveService(sentiment_preset, module_tiers, redis_server.url, env).start()
    yield service
    service.stop()


def _batches(service: LiveService) -> tuple[float, float]:
    """(batches run, rows run) so far, from /metrics."""
    text = service.metrics()
    found = dict(re.findall(r"^aim_batch_size_(sum|count) (\S+)$", text, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def test_more_inputs_than_a_request_may_have_is_413_naming_the_limit_at_once(patient: LiveService) -> None:
    _, key = patient.new_tenant("free")
    with patient.client(key) as c:
        t0 = time.perf_counter()
        r = c.post("/v1/classify", json={"inputs": [SHORT] * 49})  # the schema allows 64
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_inputs"
        assert "at most 48" in r.json()["error"]["message"]
        assert time.perf_counter() - t0 < 5  # on an idle server, not after a wait that never ends
        assert c.post("/v1/classify", json={"inputs": [SHORT] * 48}).status_code == 200


def test_a_request_over_the_compute_budget_is_413_naming_the_budget(patient: LiveService) -> None:
    _, key = patient.new_tenant("free")
    with patient.client(key) as c:
        r = c.post("/v1/classify", json={"inputs": [LONG] * 9})  # 9 x 512 tokens > 4096
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_costly"
        assert "4096 tokens" in r.json()["error"]["message"] and "AIM_MAX_REQUEST_TOKENS" in r.text
        assert c.post("/v1/classify", json={"inputs": [LONG] * 8}).status_code == 200


def test_rows_of_a_client_that_went_away_are_not_run(patient: LiveService) -> None:
    _, premium = patient.new_tenant("premium")
    _, free = patient.new_tenant("free")
    batches, rows = _batches(patient)
    statuses: list[int] = []

    def busy() -> None:  # premium work queued ahead of the free request: 8 x 512 tokens = one batch
        with patient.client(premium) as c:
            statuses.append(c.post("/v1/classify", json={"inputs": [LONG] * 8}).status_code)

    workers = [threading.Thread(target=busy) for _ in range(4)]
    for w in workers:
        w.start()
    # Once the first premium batch is done the other three are prepared and queued or running.
    assert wait_for(lambda: _batches(patient)[0] > batches, 120)
    with pytest.raises(httpx.TimeoutException), patient.client(free, timeout=0.3) as c:
        c.post("/v1/classify", json={"inputs": [SHORT] * 16})  # queued behind premium, then abandoned
    for w in workers:
        w.join(120)
    assert statuses == [200] * 4
    time.sleep(0.5)
    assert _batches(patient)[1] - rows == 32  # the 4 x 8 premium rows; none of the abandoned 16


def test_an_overloaded_server_refuses_at_once_before_preparing_anything(
    redis_server: EmbeddedRedis, sentiment_preset: str, module_tiers: Path
) -> None:
    service = LiveService(
        sentiment_preset, module_tiers, redis_server.url, {"AIM_MAX_QUEUE_WAIT_S": "0.001"}
    ).start()
    try:
        _, busy_key = service.new_tenant("free")
        _, key = service.new_tenant("free")
        with service.client(busy_key) as c:
            assert c.post("/v1/classify", json={"inputs": [SHORT]}).status_code == 200  # measures a batch
        flood = threading.Thread(
            target=lambda: service.client(busy_key).post("/v1/classify", json={"inputs": [LONG] * 8})
        )
        flood.start()
        time.sleep(0.2)
        with service.client(key) as c:
            t0 = time.perf_counter()
            # Whitespace is a 400 once prepared; a 503 proves the refusal came before any preparation.
            r = c.post("/v1/classify", json={"inputs": ["   "]})
            took = time.perf_counter() - t0
        flood.join(60)
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded", r.text
        assert "expected wait" in r.json()["error"]["message"] and int(r.headers["Retry-After"]) >= 1
        assert took < 1.0
    finally:
        service.stop()
