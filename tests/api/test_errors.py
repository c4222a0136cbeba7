import asyncio
import math

import pytest

from server.engines.base import EngineDeadError
from server.engines.fake import FakeEngine
from tests.api.conftest import ITEM, as_python_json, running_app, wait_until


def assert_error(r, status, type_):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == type_ and body["error"]["code"] == status and body["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"query": "q"},
        {"query": "q", "responses": []},
        {"query": "q", "messages": [{"role": "user", "content": "q"}], "responses": ["a"]},
        {"messages": [{"role": "assistant", "content": "x"}], "responses": ["a"]},
        {"query": "q", "responses": ["a"], "k": 0},
        {"query": "q", "responses": ["a"], "unknown": 1},
        {"items": []},
    ],
)
async def test_schema_violations_are_422_invalid_request(body):
    async with running_app(FakeEngine()) as client:
        assert_error(await client.post("/v1/score", json=body), 422, "invalid_request")


async def test_malformed_json_is_422():
    async with running_app(FakeEngine()) as client:
        r = await client.post("/v1/score", content=b"{nope", headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_request")


@pytest.mark.parametrize(
    ("body", "limit"),
    [
        ({**ITEM, "k": 64}, "max_k"),
        ({**ITEM, "temperature": 5.0}, "max_temperature"),
        ({**ITEM, "max_tokens": 100000}, "max_tokens_limit"),
        ({"query": "q", "responses": ["a"] * 65}, "max_responses_per_item"),
        ({"items": [ITEM] * 257}, "max_items_per_batch"),
    ],
)
async def test_values_over_the_configured_limits_are_400_naming_the_limit(body, limit):
    engine = FakeEngine()
    async with running_app(engine) as client:
        r = await client.post("/v1/score", json=body)
    assert_error(r, 400, "invalid_request")
    assert limit in r.json()["error"]["message"]
    assert engine.requests == []


async def test_prompt_too_long_for_the_context_is_400():
    async with running_app(FakeEngine(max_model_len=100)) as client:
        r = await client.post("/v1/score", json={**ITEM, "responses": ["x" * 500, "y"]})
    assert_error(r, 400, "invalid_request")
    assert "context" in r.json()["error"]["message"]


async def test_body_too_large_is_413():
    async with running_app(FakeEngine(), max_body_bytes=2048) as client:
        r = await client.post("/v1/score", json={"query": "q", "responses": ["x" * 5000]})
    assert_error(r, 413, "too_large")


async def test_streamed_body_too_large_is_413():
    async def chunks():
        yield b'{"query": "q", "responses": ["'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"]}'

    async with running_app(FakeEngine(), max_body_bytes=2048) as client:
        r = await client.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "too_large")


async def test_not_ready_is_503_with_retry_after():
    gate = asyncio.Event()

    class SlowStart(FakeEngine):
        async def start(self):
            await gate.wait()
            await super().start()

    async with running_app(SlowStart(), wait_ready=False) as client:
        r = await client.post("/v1/score", json=ITEM)
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")
        gate.set()
    assert_error(r, 503, "not_ready")
    assert r.headers["retry-after"]
    assert_error(ready, 503, "not_ready")
    assert live.status_code == 200


async def test_dead_engine_is_503_engine_dead():
    async with running_app(FakeEngine(fail_with=EngineDeadError("boom"))) as client:
        r = await client.post("/v1/score", json=ITEM)
    assert_error(r, 503, "engine_dead")


async def test_deadline_is_504_and_engine_work_is_cancelled_after_the_linger():
    engine = FakeEngine(delay=5)
    async with running_app(engine, request_timeout_s=0.1, idempotency_linger_s=0.2) as client:
        r = await client.post("/v1/score", json=ITEM)
        assert_error(r, 504, "timeout")
        assert len(engine.running) == 2  # lingering: a retry after the 504 would attach to it
        await wait_until(lambda: not engine.running, what="the job to be aborted after the linger")
    assert len(engine.aborted) == 2


async def test_deadline_is_504_and_engine_work_is_cancelled_at_once_without_a_linger():
    engine = FakeEngine(delay=5)
    async with running_app(engine, request_timeout_s=0.1, idempotency_linger_s=0) as client:
        r = await client.post("/v1/score", json=ITEM)
        assert engine.running == set()
    assert_error(r, 504, "timeout")
    assert len(engine.aborted) == 2


async def test_unexpected_failure_is_500_without_internals():
    async with running_app(FakeEngine(fail_with=RuntimeError("secret /etc/passwd detail"))) as client:
        r = await client.post("/v1/score", json=ITEM)
    assert_error(r, 500, "internal_error")
    assert "passwd" not in r.text and "Traceback" not in r.text


async def test_unknown_route_is_404_in_the_same_shape():
    async with running_app(FakeEngine()) as client:
        assert_error(await client.get("/v1/nope"), 404, "not_found")


@pytest.mark.parametrize(
    "body", [{"query": "q", "responses": ["a"], "messages": None}, {"items": [{"messages": None, "responses": ["a"]}]}]
)
async def test_null_messages_are_a_422_not_a_crash(body):
    # Found by schemathesis: a length constraint ran on None and raised a TypeError (500).
    async with running_app(FakeEngine()) as client:
        assert_error(await client.post("/v1/score", json=body), 422, "invalid_request")


async def test_405_names_the_allowed_methods():
    async with running_app(FakeEngine()) as client:
        r = await client.get("/v1/score")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"


async def test_a_server_that_is_not_ready_answers_503_before_judging_headers_or_k_meta():
    """Readiness comes first: a trainer's client retries a 503 but gives up on a 400."""
    gate = asyncio.Event()

    class SlowStart(FakeEngine):
        async def start(self):
            await gate.wait()
            await super().start()

    async with running_app(SlowStart(), wait_ready=False) as client:
        bad_timeout = await client.post("/v1/score", json=ITEM, headers={"x-request-timeout": "abc"})
        blank_key = await client.post(
            "/get_reward", json={"query": ["q a"], "prompts": ["q "]}, headers={"idempotency-key": " "}
        )
        k_meta = await client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"], "k_meta": 1})
        gate.set()
        await client._transport.app.state.grm.wait_ready(timeout=5)  # type: ignore[attr-defined]
        # Once it is up, the same calls get their 400s.
        after = await client.post("/v1/score", json=ITEM, headers={"x-request-timeout": "abc"})
        k_meta_after = await client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"], "k_meta": 1})
    for r in (bad_timeout, blank_key, k_meta):
        assert_error(r, 503, "not_ready")
    assert_error(after, 400, "invalid_request")
    assert_error(k_meta_after, 400, "invalid_request")
    assert "no meta RM" in k_meta_after.json()["error"]["message"]


async def test_v1_reward_judges_the_prompt_before_the_label():
    body = {"prompt": [{"role": "assistant", "content": "hi"}], "response": "x", "label": [1]}
    async with running_app(FakeEngine()) as client:
        r = await client.post("/v1/reward", json=body)
    assert_error(r, 400, "invalid_request")
    assert "ending with the user's turn" in r.json()["error"]["message"]


async def test_nan_and_infinite_options_are_422_naming_the_field():
    # Python's json writes float('nan') and float('inf') as the bare tokens NaN and Infinity.
    async with running_app(FakeEngine(), k=2) as client:
        answers = [
            await client.post("/v1/score", **as_python_json({"query": "q", "responses": ["a"], **option}))
            for option in (
                {"temperature": math.nan},
                {"temperature": math.inf},
                {"adaptive": "stderr", "adaptive_epsilon": math.inf},
            )
        ]
    assert [a.status_code for a in answers] == [422, 422, 422]
    assert [a.json()["error"]["message"].split(":")[0] for a in answers] == [
        "temperature",
        "temperature",
        "adaptive_epsilon",
    ]
