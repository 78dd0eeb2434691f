"""Live tiers reload, rate limits shared by two replicas, and a Redis outage with recovery.

Each test starts its own service(s) on a real Redis server; the outage test owns a Redis it stops and
restarts on the same port and data directory.
"""

from __future__ import annotations

import time
from pathlib import Path

from service.store import EmbeddedRedis
from tests.live import LiveService, wait_for


def _sigma(service: LiveService, tier: str) -> float:
    with service.admin() as a:
        return float(a.get("/admin/tiers").json()["tiers"][tier]["sigma"])


def test_tiers_edit_is_picked_up_live_and_a_broken_edit_is_rejected(
    redis_server: EmbeddedRedis, sentiment_preset: str, tiers_file: Path
) -> None:
    service = LiveService(sentiment_preset, tiers_file, redis_server.url).start()
    try:
        _, key = service.new_tenant("standard")
        assert _sigma(service, "standard") == 1.0
        tiers_file.write_text(tiers_file.read_text().replace("sigma: 1.0", "sigma: 1.5"))
        assert wait_for(lambda: _sigma(service, "standard") == 1.5), "edit not picked up"
        with service.client(key) as c:
            assert c.get("/v1/me").json()["sigma"] == 1.5
        good = tiers_file.read_text()
        tiers_file.write_text(good.replace("default_tier: free", "default_tier: gold"))
        time.sleep(2.5)  # the watcher polls every second: it has seen the broken file
        assert _sigma(service, "standard") == 1.5
        with service.admin() as a:
            r = a.post("/admin/tiers/reload")
            assert r.status_code == 400 and "gold" in r.json()["error"]["message"]
            metrics = service.metrics()
        assert 'aim_tier_reloads_total{status="failed"}' in metrics
        assert 'aim_tier_reloads_total{status="failed"} 0.0' not in metrics
        with service.client(key) as c:
            assert c.post("/v1/classify", json={"inputs": ["fine"]}).status_code == 200
        tiers_file.write_text(
            good.replace(
                "  standard:\n    sigma: 1.5\n",
                "  standard:\n    sigma: 1.5\n    rate_limit: {requests_per_minute: 100}\n",
            ).replace("  tiny:", "  gone:")
            + "migrate: {tiny: gone}\n"  # renaming a tier says where its tenants go (the reload guard)
        )
        assert wait_for(lambda: "gone" in service.admin().get("/admin/tiers").json()["tiers"])
    finally:
        service.stop()


def test_tenant_whose_tier_disappears_falls_back_to_default(
    redis_server: EmbeddedRedis, sentiment_preset: str, tiers_file: Path
) -> None:
    service = LiveService(sentiment_preset, tiers_file, redis_server.url).start()
    try:
        _, key = service.new_tenant("standard")
        tiers_file.write_text(tiers_file.read_text().replace("  standard:", "  renamed:"))
        with service.client(key) as c:
            assert wait_for(lambda: c.get("/v1/me").json()["tier"] == "free")
        # Removing tiny (5/min) would serve its tenants as free (600/min): refused, logged and counted.
        text = tiers_file.read_text()
        tiers_file.write_text(text[: text.index("  tiny:")])
        with service.admin() as a:
            r = a.post("/admin/tiers/reload")
            assert r.status_code == 400 and r.json()["error"]["code"] == "tiers_refused"
            assert "'tiny'" in r.json()["error"]["message"]
            assert "tiny" in a.get("/admin/tiers").json()["tiers"]
        (refused,) = [
            float(line.rsplit(" ", 1)[1])
            for line in service.metrics().splitlines()
            if line.startswith('aim_tier_reloads_total{status="refused"}')
        ]
        assert refused >= 1  # the admin reload, and the watcher's own once the file settled
    finally:
        service.stop()


def test_rate_limit_is_shared_by_two_replicas(
    redis_server: EmbeddedRedis, sentiment_preset: str, tiers_file: Path
) -> None:
    a = LiveService(sentiment_preset, tiers_file, redis_server.url).start()
    b = LiveService(sentiment_preset, tiers_file, redis_server.url).start()
    try:
        _, key = a.new_tenant("tiny")  # 5 requests per minute
        statuses = []
        with a.client(key) as ca, b.client(key) as cb:
            for i in range(8):
                r = (ca if i % 2 else cb).get("/v1/me")
                statuses.append(r.status_code)
                if r.status_code == 429:
                    assert int(r.headers["Retry-After"]) >= 1
                    assert r.json()["error"]["code"] == "rate_limited"
        assert statuses == [200] * 5 + [429] * 3, statuses
    finally:
        a.stop()
        b.stop()


def test_redis_outage_and_recovery(tmp_path: Path, sentiment_preset: str, tiers_file: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    service = LiveService(sentiment_preset, tiers_file, redis.url, env={"AIM_REDIS_GRACE_S": "60"}).start()
    try:
        tenant, key = service.new_tenant("premium", "survivor")
        _, unseen = service.new_tenant("premium", "never-resolved")
        with service.client(key) as c:
            assert c.get("/v1/me").status_code == 200  # resolved once: now in the local cache
        redis.stop()
        with service.client(key) as c, service.client(unseen) as u, service.admin() as a:
            assert c.post("/v1/classify", json={"inputs": ["still served"]}).status_code == 200
            r = u.get("/v1/me")
            assert r.status_code == 503 and "Retry-After" in r.headers  # unknown keys fail closed
            assert c.get("/readyz").status_code == 503
            w = a.post("/admin/tenants", json={"name": "lost?", "tier": "free"})
            assert w.status_code == 503  # never acknowledged, so never lost
        redis.start()
        with service.client(key) as c, service.client(unseen) as u, service.admin() as a:
            assert wait_for(lambda: c.get("/readyz").status_code == 200, 15.0)
            assert wait_for(lambda: u.get("/v1/me").status_code == 200, 15.0)
            names = [t["name"] for t in a.get("/admin/tenants").json()["tenants"]]
            assert "survivor" in names and "lost?" not in names
            assert a.get(f"/admin/tenants/{tenant}").status_code == 200
    finally:
        service.stop()
        redis.stop()
