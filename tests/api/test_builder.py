"""`build_components` with boundaries passed in: a tiny random model and a store over the test Redis, the
app served in-process (httpx's ASGITransport, the lifespan entered by hand). No preset, no uvicorn.

It checks what the typed dependencies promise: a route gets the collaborator it declares, the batcher and
the engine dependencies answer 404 ``unsupported_task`` for a model whose task has none, every dependency
answers 503 ``not_ready`` before the components exist, and the caller's store outlives the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import torch

from service.api.app import create_app
from service.api.builder import build_components
from service.api.components import Components
from service.models import LoadedModel, load_model
from service.settings import Settings
from service.store import EmbeddedRedis, RedisGate, TenantStore
from tests.live import ADMIN_TOKEN, METRICS_TOKEN, SECRET
from tests.models.conftest import _causal_lm, _text_classifier  # the tiny random models of the loader tests

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    folder = tmp_path_factory.mktemp("tiny") / "tiny-bert"
    folder.mkdir()
    return load_model(_text_classifier(folder))


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    folder.mkdir()
    return load_model(_causal_lm(folder))


@pytest.fixture
def settings(tmp_path: Path, redis_server: EmbeddedRedis) -> Settings:
    return Settings.from_env(
        {
            "AIM_STATE_DIR": str(tmp_path / "state"),
            "AIM_ADMIN_TOKEN": ADMIN_TOKEN,
            "AIM_SECRET": SECRET,
            "AIM_METRICS_TOKEN": METRICS_TOKEN,
            "REDIS_URL": redis_server.url,  # unused: the store is passed in
        }
    )


@pytest.fixture
async def store(redis_server: EmbeddedRedis, settings: Settings) -> AsyncIterator[TenantStore]:
    gate = RedisGate.from_url(redis_server.url)
    store = TenantStore(gate, settings.secret)
    await store.start()
    yield store
    await store.aclose()
    await gate.aclose()


@asynccontextmanager
async def serving(
    settings: Settings, tiers: Path, model: LoadedModel, store: TenantStore, built: list[Components]
) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ``model`` and ``store``, started; ``built`` receives its components."""

    @asynccontextmanager
    async def factory() -> AsyncIterator[Components]:
        async with build_components(settings, tiers, model=model, store=store, watch_tiers=False) as c:
            built.append(c)
            yield c

    app = create_app(factory)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aimserve.test") as client:
            yield client


async def _tenant(client: httpx.AsyncClient, tier: str) -> dict[str, str]:
    r = await client.post(
        "/admin/tenants",
        json={"name": "small", "tier": tier},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


async def test_a_small_classifier_and_store_serve_a_request(settings, tiers_file, tiny_classifier, store):
    built: list[Components] = []
    text = "the cat sat on the mat"
    async with serving(settings, tiers_file, tiny_classifier, store, built) as client:
        premium = await _tenant(client, "premium")
        r = await client.post("/v1/classify", json={"inputs": [text], "top_k": 3}, headers=premium)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["model"], body["tier"], body["modulation"]["sigma"]) == ("tiny-bert", "premium", 0.0)
        # premium is sigma 0 with no focus: the model's own answer, label for label
        clean = tiny_classifier.forward([tiny_classifier.prepare(text)])[0]
        assert body["results"][0]["label"] == tiny_classifier.labels[int(torch.argmax(clean))]
        # the engine dependency: this model has none
        r = await client.post("/v1/generate", json={"prompt": "hi"}, headers=premium)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unsupported_task")
        assert "/v1/generate" in r.json()["error"]["message"]
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["checks"]) == (200, {"model": True, "redis": True})
    [components] = built
    assert components.batcher is not None and components.engine is None
    # The app closed what it opened; the store is the caller's and still answers.
    assert await store.ping()
    assert (await store.resolve_key(premium["Authorization"].removeprefix("Bearer "))).tier == "premium"


async def test_a_small_llm_gets_the_engine_and_no_batcher(settings, tiers_file, tiny_llm, store):
    built: list[Components] = []
    async with serving(settings, tiers_file, tiny_llm, store, built) as client:
        standard = await _tenant(client, "standard")
        r = await client.post("/v1/classify", json={"inputs": ["the cat"]}, headers=standard)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unsupported_task")
        assert "/v1/classify" in r.json()["error"]["message"]
        r = await client.post(
            "/v1/generate", json={"prompt": "the cat", "max_new_tokens": 3}, headers=standard
        )
        assert r.status_code == 200, r.text
        assert r.json()["tier"] == "standard" and 1 <= r.json()["usage"]["completion_tokens"] <= 3
    [components] = built
    assert components.engine is not None and components.batcher is None
    assert not components.engine.stats().ready  # stopped with the app


async def test_before_the_components_exist_every_dependency_is_not_ready():
    @asynccontextmanager
    async def never() -> AsyncIterator[Components]:
        raise AssertionError("the lifespan is not entered here")
        yield

    transport = httpx.ASGITransport(app=create_app(never))
    async with httpx.AsyncClient(transport=transport, base_url="http://aimserve.test") as client:
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["checks"]) == (503, {"model": False})
        for method, path in (("GET", "/metrics"), ("GET", "/v1/me"), ("GET", "/admin/tiers")):
            r = await client.request(method, path, headers={"Authorization": "Bearer x"})
            assert (r.status_code, r.json()["error"]["code"]) == (503, "not_ready"), path
            assert r.headers["Retry-After"] == "5"
