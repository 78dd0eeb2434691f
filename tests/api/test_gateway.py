"""The gateway over real HTTP: keys, tiers, modulation per tier, focus policy, feedback, errors.

Model: the real `minilm-sentiment` preset. Redis: a real server. Client: httpx against uvicorn.
"""

from __future__ import annotations

import base64

import pytest

from tests.live import ADMIN_TOKEN, LiveService, escaped_json, wait_for

TEXTS = ["I love this, what a great day!", "This is awful and I hate it.", "The meeting is at 3pm."]


def test_health_ready_and_openapi(text_service: LiveService) -> None:
    with text_service.client() as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        paths = c.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/classify",
        "/v1/segment",
        "/v1/generate",
        "/v1/me",
        "/v1/me/focus",
        "/v1/feedback",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/models",
        "/admin/tenants",
        "/admin/tiers",
    ):
        assert path in paths


def test_key_lifecycle_create_use_rotate_revoke(text_service: LiveService) -> None:
    tenant, key1 = text_service.new_tenant("standard", "lifecycle")
    assert key1.startswith("aim_") and len(key1) >= 30
    with text_service.client(key1) as c:
        me = c.get("/v1/me").json()
    assert me["tenant"] == tenant and me["tier"] == "standard" and me["sigma"] == 1.0
    with text_service.admin() as a:
        rotated = a.post(f"/admin/tenants/{tenant}/keys")
        assert rotated.status_code == 201
        key2, key2_id = rotated.json()["api_key"], rotated.json()["key_id"]
        keys = a.get(f"/admin/tenants/{tenant}").json()["keys"]
        assert key1 not in str(keys) and key2 not in str(keys)  # only ids, never keys or hashes
        old_id = next(k["key_id"] for k in keys if k["key_id"] != key2_id)
        with text_service.client(key1) as c1, text_service.client(key2) as c2:
            assert c1.get("/v1/me").status_code == 200  # older keys live until revoked
            assert c2.get("/v1/me").status_code == 200
            assert a.delete(f"/admin/tenants/{tenant}/keys/{old_id}").status_code == 204
            assert wait_for(lambda: c1.get("/v1/me").status_code == 401, 6.0)
            body = c1.get("/v1/me").json()
            assert body["error"]["code"] == "unauthorized"
            assert c2.get("/v1/me").status_code == 200


def test_authentication_errors(text_service: LiveService) -> None:
    with text_service.client() as c:
        for headers in (
            {},
            {"Authorization": "Bearer aim_sk_unknown_key_000000000000000"},
            {"Authorization": "Basic abc"},
            {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ):
            r = c.get("/v1/me", headers=headers)
            assert r.status_code == 401, headers
            assert set(r.json()["error"]) == {"code", "message"}
        _, key = text_service.new_tenant("free")
        assert c.get("/admin/tenants", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_premium_rows_are_the_clean_model_and_free_rows_keyed(text_service: LiveService) -> None:
    _, premium = text_service.new_tenant("premium")
    _, free = text_service.new_tenant("free")
    body = {"inputs": TEXTS, "top_k": 3}
    with text_service.client(premium) as p, text_service.client(free) as f:
        clean = p.post("/v1/classify", json=body).json()
        noisy1 = f.post("/v1/classify", json=body).json()
        noisy2 = f.post("/v1/classify", json=body).json()
    assert clean["tier"] == "premium" and clean["modulation"] == {"sigma": 0.0, "focus": None}
    assert noisy1["modulation"]["sigma"] == 4.0
    model = text_service.components.model  # type: ignore[union-attr]
    direct = model.forward([model.prepare(t) for t in TEXTS]).softmax(-1)
    for row, probs in zip(clean["results"], direct, strict=True):
        assert row["label"] == model.labels[int(probs.argmax())]
        assert row["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert [r["top_k"] for r in noisy1["results"]] == [r["top_k"] for r in noisy2["results"]]  # keyed
    assert [r["top_k"] for r in noisy1["results"]] != [r["top_k"] for r in clean["results"]]
    assert noisy1["id"] != noisy2["id"] and noisy1["id"].startswith("req_")


def test_tier_change_takes_effect(text_service: LiveService) -> None:
    tenant, key = text_service.new_tenant("free")
    with text_service.client(key) as c, text_service.admin() as a:
        assert c.get("/v1/me").json()["sigma"] == 4.0
        assert a.patch(f"/admin/tenants/{tenant}", json={"tier": "premium"}).status_code == 200
        assert wait_for(lambda: c.get("/v1/me").json()["tier"] == "premium", 6.0)
        r = c.post("/v1/classify", json={"inputs": TEXTS[:1]}).json()
        assert r["modulation"]["sigma"] == 0.0
        bad = a.patch(f"/admin/tenants/{tenant}", json={"tier": "platinum"})
        assert bad.status_code == 400 and "platinum" in bad.json()["error"]["message"]
        assert a.patch("/admin/tenants/ten_0000000000000000", json={"name": "x"}).status_code == 404


def test_focus_policy_is_enforced(text_service: LiveService) -> None:
    _, free = text_service.new_tenant("free")
    _, premium = text_service.new_tenant("premium")
    focus = {"classes": ["positive"], "strength": 2.0, "direction": "boost"}
    with text_service.client(free) as f, text_service.client(premium) as p:
        r = f.put("/v1/me/focus", json=focus)
        assert r.status_code == 403 and r.json()["error"]["code"] == "focus_not_allowed"
        r = p.put("/v1/me/focus", json={**focus, "classes": ["ecstatic"]})
        assert r.status_code == 400 and "ecstatic" in r.json()["error"]["message"]
        r = p.put("/v1/me/focus", json={**focus, "strength": 3.5})
        assert r.status_code == 400 and "3.5" in r.json()["error"]["message"]
        r = p.put("/v1/me/focus", json=focus)
        assert r.status_code == 200 and r.json()["focus"]["classes"] == ["positive"]
        assert wait_for(
            lambda: p.post("/v1/classify", json={"inputs": TEXTS[2:]}).json()["modulation"]["focus"]
        )
        assert p.delete("/v1/me/focus").status_code == 204
        assert wait_for(lambda: p.get("/v1/me").json()["focus"] is None)


def test_focus_boost_raises_the_target_class(text_service: LiveService) -> None:
    _, key = text_service.new_tenant("premium")
    texts = [f"The package arrived on day {i} of the month." for i in range(24)]
    with text_service.client(key) as c:
        before = c.post("/v1/classify", json={"inputs": texts}).json()["results"]
        assert c.put("/v1/me/focus", json={"classes": ["positive"], "strength": 3.0}).status_code == 200
        assert wait_for(lambda: c.get("/v1/me").json()["focus"] is not None)
        after = c.post("/v1/classify", json={"inputs": texts}).json()["results"]
    share = [sum(r["label"] == "positive" for r in rs) / len(rs) for rs in (before, after)]
    assert share[1] > share[0], share


def test_feedback_counts_per_tier_and_only_for_the_requester(text_service: LiveService) -> None:
    _, key = text_service.new_tenant("premium")
    _, other = text_service.new_tenant("premium")
    with text_service.client(key) as c, text_service.client(other) as o:
        res = c.post("/v1/classify", json={"inputs": TEXTS[:2]}).json()
        label = res["results"][0]["label"]
        assert c.post("/v1/feedback", json={"id": res["id"], "index": 0, "label": label}).status_code == 204
        assert o.post("/v1/feedback", json={"id": res["id"], "index": 0, "label": label}).status_code == 404
        assert c.post("/v1/feedback", json={"id": res["id"], "index": 5, "label": label}).status_code == 400
        r = c.post("/v1/feedback", json={"id": res["id"], "index": 1, "label": "meh"})
        assert r.status_code == 400
    metrics = text_service.metrics()
    assert 'aim_feedback_total{tier="premium"}' in metrics
    assert key not in metrics and other not in metrics


def test_contract_error_statuses(text_service: LiveService) -> None:
    _, key = text_service.new_tenant("premium")
    image = base64.b64encode(b"not really a png").decode()
    with text_service.client(key) as c:
        cases = [
            (c.post("/v1/classify", json={}), 422, "invalid_request"),
            (c.post("/v1/classify", json={"inputs": "text"}), 422, "invalid_request"),
            (c.post("/v1/classify", json={"inputs": ["x"], "top_k": 0}), 422, "invalid_request"),
            (
                c.post("/v1/classify", content=b"{not json", headers={"Content-Type": "application/json"}),
                400,
                "malformed_json",
            ),
            (c.post("/v1/classify", json={"inputs": [{"image": image}]}), 400, "wrong_input_type"),
            (c.post("/v1/segment", json={"inputs": [{"image": image}]}), 404, "unsupported_task"),
            (c.post("/v1/generate", json={"prompt": "hi"}), 404, "unsupported_task"),
            (c.post("/v1/classify", json={"inputs": ["x" * (9 << 20)]}), 413, "payload_too_large"),
            (c.get("/v1/nothing-here"), 404, "not_found"),
            # Schema and behaviour agree: what the schema refuses is 422, coercions included.
            (c.post("/v1/classify", json={"inputs": []}), 422, "invalid_request"),
            (c.post("/v1/classify", json={"inputs": ["x"], "top_k": True}), 422, "invalid_request"),
            (c.post("/v1/classify", json={"inputs": ["x"], "top_k": "2"}), 422, "invalid_request"),
            (c.put("/v1/me/focus", json={"classes": ["positive"], "strength": "1"}), 422, "invalid_request"),
            (c.delete("/v1/classify"), 405, "method_not_allowed"),
        ]
    for response, status, code in cases:
        assert response.status_code == status, (response.request.url, response.text[:200])
        assert response.json()["error"]["code"] == code
    assert cases[-1][0].headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/classify", {"inputs": ["fine", "\ud800"]}),
        ("/v1/classify", {"inputs": ["\udfff tail"]}),
        ("/v1/me/focus", {"classes": ["positive\ud83d"], "strength": 1.0}),
        ("/v1/feedback", {"id": "req_0123456789ab", "label": "\udc80"}),
    ],
)
def test_lone_surrogates_are_422_never_500(text_service: LiveService, path: str, body: object) -> None:
    _, key = text_service.new_tenant("premium")
    with text_service.client(key) as c:
        method = c.put if path == "/v1/me/focus" else c.post
        r = method(path, **escaped_json(body))
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_request"
        assert "unicode" in r.json()["error"]["message"].lower()
        assert c.post("/v1/classify", json={"inputs": ["still served"]}).status_code == 200


def test_metrics_expose_per_tier_series_without_secrets(text_service: LiveService) -> None:
    _, key = text_service.new_tenant("free")
    with text_service.client(key) as c:
        c.post("/v1/classify", json={"inputs": TEXTS})
    text = text_service.metrics()
    assert 'aim_requests_total{route="/v1/classify",status="200",tier="free"}' in text
    assert 'aim_fidelity_rows_total{tier="free"}' in text
    assert 'aim_tier_sigma{tier="free"} 4.0' in text
    assert key not in text and "test-secret" not in text
