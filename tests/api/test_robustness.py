"""Admission control, deadlines, size limits, API keys and cancellation on disconnect (fake engine)."""

import asyncio
import json

import pytest

from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine
from tests.api.conftest import ITEM, item, running_app, start_call, wait_until
from tests.api.test_errors import assert_error


async def test_no_slot_in_time_is_429_with_retry_after_and_the_first_request_still_finishes():
    engine = FakeEngine(delay=0.5)
    async with running_app(engine, max_concurrent_requests=1, max_queue_wait_s=0.05) as client:
        first = asyncio.create_task(client.post("/v1/score", json=ITEM))
        await wait_until(lambda: engine.running, what="the first request to hold the only slot")
        second = await client.post("/v1/score", json=item(seed=2))
        assert (await first).status_code == 200
    assert_error(second, 429, "overloaded")
    assert int(second.headers["retry-after"]) >= 1


async def test_work_beyond_the_engines_batch_waits_at_the_gate_and_finishes():
    engine = FakeEngine(delay=0.1, max_num_seqs=4)
    async with running_app(engine) as client:
        results = await asyncio.gather(*(client.post("/v1/score", json=item(seed=i)) for i in range(3)))
    assert [r.status_code for r in results] == [200, 200, 200]
    assert engine.peak_seqs_running == 4  # 3 calls x 4 samples went through 4 at a time


async def test_the_request_deadline_header_is_honoured_and_capped():
    engine = FakeEngine(delay=5)
    async with running_app(engine, idempotency_linger_s=0) as client:
        r = await client.post("/v1/score", json=ITEM, headers={"X-Request-Timeout": "0.1"})
        assert engine.running == set()
        bad = await client.post("/v1/score", json=ITEM, headers={"X-Request-Timeout": "soon"})
    assert_error(r, 504, "timeout")
    assert_error(bad, 400, "invalid_request")
    assert "X-Request-Timeout".lower() in bad.json()["error"]["message"].lower()


async def test_long_responses_and_conversations_are_400_naming_the_limit():
    async with running_app(FakeEngine(), max_response_chars=30, max_conversation_chars=20) as client:
        long_response = await client.post("/v1/score", json={**ITEM, "responses": ["x" * 31]})
        long_query = await client.post("/v1/score", json={**ITEM, "query": "q" * 21})
        info = (await client.get("/v1/info")).json()
    assert_error(long_response, 400, "invalid_request")
    assert "max_response_chars = 30" in long_response.json()["error"]["message"]
    assert "max_conversation_chars = 20" in long_query.json()["error"]["message"]
    assert info["limits"]["max_response_chars"] == 30 and info["limits"]["max_concurrent_requests"] == 4096


async def test_api_keys_guard_everything_but_health_and_docs(tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text("# trainer keys\nfile-key\n")
    async with running_app(FakeEngine(), api_keys="env-key, other", api_key_file=key_file) as client:
        missing = await client.post("/v1/score", json=ITEM)
        wrong = await client.post("/v1/score", json=ITEM, headers={"Authorization": "Bearer nope"})
        basic = await client.get("/v1/info", headers={"Authorization": "Basic env-key"})
        ok_env = await client.post("/v1/score", json=ITEM, headers={"Authorization": "Bearer env-key"})
        ok_file = await client.get("/v1/info", headers={"Authorization": "Bearer file-key"})
        health = await client.get("/health/ready")
        schema = await client.get("/openapi.json")
    for r in (missing, wrong, basic):
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer" and r.headers["x-request-id"]
    assert ok_env.status_code == 200 and ok_file.status_code == 200
    assert health.status_code == 200 and schema.status_code == 200


def test_an_unreadable_key_file_fails_at_startup(tmp_path):
    with pytest.raises(ValueError, match="cannot read api_key_file"):
        Settings(api_key_file=tmp_path / "missing").resolved_api_keys()


async def test_a_client_that_disconnects_leaves_no_engine_work_running():
    engine = FakeEngine(delay=30)
    # No linger: the job of a request nobody waits for is aborted at once (see test_dedup.py for retries).
    app = build_app(Settings(engine="fake", idempotency_linger_s=0), engine=engine)
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready(timeout=10)
        call, gone = start_call(app, "/v1/score", json.dumps(ITEM).encode())
        await wait_until(lambda: len(engine.running) == 2, what="both response orders to generate")
        gone.set()  # the client hangs up
        await asyncio.wait_for(call, timeout=5)
        assert engine.running == set()
        assert len(engine.aborted) == 2
        assert app.state.grm.admission.calls == 0 and app.state.grm.gate.inflight == 0  # nothing held


async def test_draining_turns_readiness_and_new_scoring_calls_to_503():
    async with running_app(FakeEngine()) as client:
        client_app = client._transport.app  # type: ignore[attr-defined]
        client_app.state.grm.begin_drain()
        ready = await client.get("/health/ready")
        r = await client.post("/v1/score", json=ITEM)
        live = await client.get("/health/live")
    assert_error(ready, 503, "not_ready")
    assert "draining" in ready.json()["error"]["message"]
    assert_error(r, 503, "not_ready")
    assert live.status_code == 200


async def test_metrics_path_is_open_to_scrapers_unless_configured_otherwise():
    async with running_app(FakeEngine(), api_keys="k") as client:
        open_ = await client.get("/metrics")
    async with running_app(FakeEngine(), api_keys="k", metrics_public=False) as client:
        guarded = await client.get("/metrics")
    assert open_.status_code == 200
    assert "grm_requests_total" in open_.text
    assert_error(guarded, 401, "unauthorized")


@pytest.mark.parametrize("dedup", [True, False], ids=["in-a-dedup-job", "in-the-calls-task"])
async def test_a_deadline_with_one_request_in_the_engine_and_one_at_the_gate_is_504_and_frees_the_gate(dedup):
    """Issue #30 finding 1: both requests are cancelled in one step; when the running one's release came
    first, the gate granted the cancelled waiter (the call's task failed with 500, the capacity was lost
    for good). Which comes first is the order of a task set, so the test repeats the case."""
    engine = FakeEngine(delay=1.0, max_num_seqs=2)  # k=4: two orders of 2 samples, one at a time
    settings = {"idempotency_linger_s": 0, "group_window_s": 0, "dedup_identical_requests": dedup}
    async with running_app(engine, **settings) as client:
        gate = client._transport.app.state.grm.gate  # type: ignore[attr-defined]
        for seed in range(8):
            r = await client.post("/v1/score", json=item(seed=seed), headers={"X-Request-Timeout": "0.3"})
            assert_error(r, 504, "timeout")
            await wait_until(lambda: not engine.running, what="the running request to be aborted")
            assert (gate.inflight, gate.queued, gate.waiting_requests) == (0, 0, 0)
