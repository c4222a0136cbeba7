from server.engines.fake import FakeEngine
from tests.api.conftest import ITEM, running_app


async def test_ready_and_live_once_started():
    async with running_app(FakeEngine()) as client:
        assert (await client.get("/health/ready")).json() == {"status": "ready"}
        assert (await client.get("/health/live")).json() == {"status": "alive"}


async def test_liveness_fails_when_the_engine_dies():
    engine = FakeEngine()
    async with running_app(engine) as client:
        engine.dead = True
        r = await client.get("/health/live")
    assert r.status_code == 503 and r.json()["error"]["type"] == "engine_dead"


async def test_info_names_model_template_defaults_and_limits():
    async with running_app(FakeEngine(), k=4, max_k=16) as client:
        info = (await client.get("/v1/info")).json()
    assert info["model"] == "fake-grm" and info["engine"] == "fake"
    assert info["template"] == "deepseek-grm-default-v1" and info["format_guidance"] is True
    assert info["defaults"]["k"] == 4 and info["limits"]["max_k"] == 16
    assert info["version"]


async def test_request_id_is_echoed_or_generated():
    async with running_app(FakeEngine()) as client:
        given = await client.post("/v1/score", json=ITEM, headers={"x-request-id": "trainer-step-7"})
        fresh = await client.get("/health/live")
        unsafe = await client.get("/health/live", headers={"x-request-id": "bad id\nwith newline"})
    assert given.headers["x-request-id"] == "trainer-step-7"
    assert len(fresh.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "bad id\nwith newline"


async def test_openapi_docs_are_served():
    async with running_app(FakeEngine()) as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert "/v1/score" in spec["paths"] and docs.status_code == 200
