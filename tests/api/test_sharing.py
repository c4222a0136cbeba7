"""Sharing work between calls never changes a call's answer (issue #20's findings, one test each).

Each test reproduces a finding of the review of 8968b1c and fails there: dedup across tenants, a
reused key, inherited deadlines, grouping past the context, retries after 504, shutdown, the error
contract and token usage. Rerank order and chat markup have their own files (test_rerank.py,
tests/unit/test_chat_markup.py); the property-based test of all of it together is
test_sharing_properties.py.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from grm_client import AsyncGRMClient
from server.app import build_app
from server.config import Settings
from server.engines.base import Completion, EngineNotReadyError, GenerationRequest
from server.engines.fake import FakeEngine, length_script, shown_responses
from server.pipeline.domain import Message
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template
from server.pipeline.scoring import ScoreSpec
from server.serving.grouping import Grouper
from tests.api.conftest import ITEM, item, running_app, wait_until

KEYS = {"api_keys": "key-a,key-b"}
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
PROMPT = "<|im_start|>user\nSummarise the plot.<|im_end|>\n<|im_start|>assistant\n"


def one_row(response: str) -> dict:
    return {"query": [PROMPT + response + "<|im_end|>"], "prompts": [PROMPT], "labels": [None]}


def error_type(response: httpx.Response) -> str:
    return response.json()["error"]["type"]


# ---- 1. tenants ------------------------------------------------------------------------------------


async def test_an_idempotency_key_of_one_tenant_never_answers_another():
    engine = FakeEngine(delay=0.2)
    mine = {"query": "Q?", "responses": ["tenant A's secret answer"], "k": 2, "return_samples": True}
    theirs = {"query": "Q?", "responses": ["short", "a longer answer"], "k": 2}
    async with running_app(engine, **KEYS) as client:
        first = asyncio.create_task(client.post("/v1/score", json=mine, headers={**A, "Idempotency-Key": "job-1"}))
        await wait_until(lambda: engine.running, what="tenant A's job to generate")
        other = await client.post("/v1/score", json=theirs, headers={**B, "Idempotency-Key": "job-1"})
        await first
    assert other.status_code == 200, other.text
    assert len(other.json()["responses"]) == 2
    assert "secret" not in other.text


async def test_identical_bodies_of_two_tenants_are_two_jobs():
    engine = FakeEngine()
    async with running_app(engine, **KEYS) as client:
        a = await client.post("/v1/score", json=ITEM, headers=A)
        b = await client.post("/v1/score", json=ITEM, headers=B)
        again = await client.post("/v1/score", json=ITEM, headers=A)
    assert a.status_code == b.status_code == again.status_code == 200
    assert len(engine.requests) == 2 * 2  # one job per tenant (two orders each); A's repeat was cached


# ---- 2. a key reused with another body ----------------------------------------------------------


async def test_a_key_reused_with_another_body_is_422_while_running_and_after():
    engine = FakeEngine(delay=0.2)
    key = {"Idempotency-Key": "batch-1"}
    batch_of_two = {"items": [ITEM, {**ITEM, "seed": 2}]}
    async with running_app(engine) as client:
        first = asyncio.create_task(client.post("/v1/score", json=batch_of_two, headers=key))
        await wait_until(lambda: engine.running, what="the first job to generate")
        while_running = await client.post("/v1/score", json=ITEM, headers=key)
        assert (await first).status_code == 200
        after = await client.post("/v1/score", json={"items": [ITEM]}, headers=key)
        same_body = await client.post("/v1/score", json=batch_of_two, headers=key)
    for r in (while_running, after):
        assert r.status_code == 422 and error_type(r) == "idempotency_key_reused", r.text
    assert same_body.status_code == 200 and len(same_body.json()["items"]) == 2


async def test_the_same_body_with_other_key_order_or_spacing_is_the_same_request():
    engine = FakeEngine()
    key = {"Idempotency-Key": "k", "content-type": "application/json"}
    async with running_app(engine) as client:
        a = await client.post("/v1/score", content=b'{"query": "Q", "responses": ["x"], "k": 2}', headers=key)
        b = await client.post("/v1/score", content=b'{"k":2,"responses":["x"],"query":"Q"}', headers=key)
    assert a.status_code == b.status_code == 200
    assert len(engine.requests) == 1


# ---- 3. deadlines per waiter -------------------------------------------------------------------


async def test_a_call_attached_to_a_job_keeps_its_own_deadline():
    engine = FakeEngine(delay=0.6)
    key = {"Idempotency-Key": "shared"}
    async with running_app(engine) as client:
        short = asyncio.create_task(client.post("/v1/score", json=ITEM, headers={**key, "X-Request-Timeout": "0.2"}))
        await wait_until(lambda: engine.running, what="the job to generate")
        long = await client.post("/v1/score", json=ITEM, headers=key)
        short_r = await short
    assert short_r.status_code == 504 and error_type(short_r) == "timeout"
    assert long.status_code == 200, long.text
    assert len(engine.requests) == 2 and engine.aborted == []  # one job, finished for the second caller


async def test_identical_bodies_keep_their_own_deadlines():
    engine = FakeEngine(delay=0.6)
    async with running_app(engine) as client:
        short = asyncio.create_task(client.post("/v1/score", json=ITEM, headers={"X-Request-Timeout": "0.2"}))
        await wait_until(lambda: engine.running, what="the job to generate")
        long = await client.post("/v1/score", json=ITEM)
        assert (await short).status_code == 504
    assert long.status_code == 200


# ---- 4. grouping never fails a call --------------------------------------------------------------


def prompt_chars(responses: list[str]) -> int:
    return len(get_template(DEFAULT_TEMPLATE).render([Message("user", "Summarise the plot.")], responses))


async def test_rows_that_fit_alone_are_answered_when_grouped_they_would_not_fit():
    rows = [f"Rollout {i}: " + "the plot thickens " * 42 for i in range(3)]  # ~750 characters each
    context = prompt_chars(rows[:1]) + 100  # each fits alone; all three together do not
    assert prompt_chars(rows) > context
    engine = FakeEngine(max_model_len=context)
    async with running_app(engine, k=2, group_window_s=0.5) as client:
        answers = await asyncio.gather(*(client.post("/get_reward", json=one_row(r)) for r in rows))
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    assert [a.json()["extra_logs"]["grm_group_size"] for a in answers] == [[1.0]] * 3
    alone = [min(10, 1 + len(r) // 10) for r in rows]
    assert [a.json()["rewards"][0] for a in answers] == [(s - 1) / 9 for s in alone]


async def test_a_row_too_long_on_its_own_gets_its_own_400_and_the_others_their_rewards():
    fits = ["a short rollout", "another short one"]
    too_long = "x" * 3000
    engine = FakeEngine(max_model_len=prompt_chars([too_long]) - 1)
    async with running_app(engine, k=2, group_window_s=0.5) as client:
        answers = await asyncio.gather(*(client.post("/get_reward", json=one_row(r)) for r in [*fits, too_long]))
    assert [a.status_code for a in answers] == [200, 200, 400]


# ---- 5. a retry after 504 attaches ---------------------------------------------------------------


async def test_grm_client_retries_after_504_attach_to_the_running_job():
    engine = FakeEngine(delay=1.0)
    app = build_app(Settings(engine="fake", request_timeout_s=0.3), engine=engine)
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready(timeout=10)
        client = AsyncGRMClient(
            base_url="http://grm.test", transport=httpx.ASGITransport(app=app), max_retries=3, backoff_base=0.01
        )
        async with client:
            result = await client.score("Is the sky blue?", ["Yes, on a clear day.", "No."], k=4)
    assert [r.score for r in result.responses] == [4 * 3, 4 * 1]
    assert len(engine.requests) == 2 and engine.aborted == []  # one job for the call and its retries


# ---- 6. shutdown ---------------------------------------------------------------------------------


def spec(*responses: str) -> ScoreSpec:
    return ScoreSpec((Message("user", "Q"),), responses, k=2, temperature=0.5, top_p=1.0, max_tokens=256)


async def test_closing_the_grouper_settles_a_call_still_collecting():
    async def judge(s: ScoreSpec, request_id: str):  # never reached: the batch is still collecting
        raise AssertionError("judged")

    grouper = Grouper(judge, window_s=30, max_group_size=4)
    waiting = asyncio.create_task(grouper.score(spec("a")))
    await asyncio.sleep(0.01)
    await grouper.close()
    with pytest.raises(EngineNotReadyError):  # not an answer, and not a hang
        await asyncio.wait_for(waiting, 1)
    assert grouper.collecting == grouper.judging == 0


async def test_closing_the_grouper_cancels_a_batch_being_judged():
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def judge(s: ScoreSpec, request_id: str):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    grouper = Grouper(judge, window_s=0.01, max_group_size=4)
    waiting = asyncio.create_task(grouper.score(spec("a")))
    await asyncio.wait_for(started.wait(), 1)
    await grouper.close()
    assert cancelled.is_set()
    with pytest.raises(EngineNotReadyError):  # not an answer, and not a hang
        await asyncio.wait_for(waiting, 1)
    assert grouper.judging == 0


async def test_shutting_down_answers_a_waiting_grouped_call_with_503():
    app = build_app(Settings(engine="fake", group_window_s=5), engine=FakeEngine())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://grm.test") as client:
        async with app.router.lifespan_context(app):
            await app.state.grm.wait_ready(timeout=10)
            call = asyncio.create_task(client.post("/get_reward", json=one_row("a rollout")))
            await wait_until(lambda: app.state.service.grouper._open, what="the row to wait for others")
        answer = await asyncio.wait_for(call, 5)
    assert answer.status_code == 503 and error_type(answer) == "not_ready"


# ---- 9. one error contract -----------------------------------------------------------------------


async def test_every_scoring_route_documents_401_and_429():
    async with running_app(FakeEngine()) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/v1/score", "/get_reward", "/v1/rerank", "/v2/rerank"):
        assert {"401", "429"} <= set(paths[path]["post"]["responses"]), path


async def test_a_failed_engine_is_reported_without_its_detail():
    engine = FakeEngine()

    async def fail() -> None:
        raise RuntimeError("cannot open /secret/models/grm-27b/config.json")

    engine.start = fail  # type: ignore[method-assign]
    async with running_app(engine, wait_ready=False) as client:
        await wait_until(lambda: client._transport.app.state.grm.failure, what="the start to fail")  # type: ignore[attr-defined]
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")
    for r in (ready, live):
        assert r.status_code == 503 and error_type(r) == "engine_dead"
        assert "/secret" not in r.text


# ---- 10. exact usage -----------------------------------------------------------------------------


def one_token(request: GenerationRequest) -> list[Completion]:
    (text,) = length_script(GenerationRequest(**{**request.__dict__, "n": 1}))
    return [Completion(text, "stop", 1)] * request.n


async def test_grouped_calls_usage_sums_to_the_batch_usage():
    engine = FakeEngine(one_token)
    body = {"query": "Q", "k": 1}
    async with running_app(engine, group_window_s=0.5) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/score", json={**body, "responses": [r]}) for r in ("a", "bb", "ccc"))
        )
    (request,) = engine.requests  # one GRM prompt for the three calls, one sample of 1 token
    assert sorted(shown_responses(request.prompt)) == ["a", "bb", "ccc"]
    usage = [a.json()["usage"] for a in answers]
    assert sum(u["generation_tokens"] for u in usage) == 1
    assert sum(u["prompt_tokens"] for u in usage) == len(request.prompt.split())


# ---- found by the review of this change ----------------------------------------------------------


async def test_a_caller_leaving_after_its_batch_was_split_aborts_its_own_engine_work():
    rows = [f"Rollout {i}: " + "the plot thickens " * 42 for i in range(2)]
    engine = FakeEngine(delay=1.0, max_model_len=prompt_chars(rows[:1]) + 100)  # each fits alone, not both
    async with running_app(engine, k=1, group_window_s=0.2, idempotency_linger_s=0) as client:
        leaving = asyncio.create_task(client.post("/get_reward", json=one_row(rows[0])))
        staying = asyncio.create_task(client.post("/get_reward", json=one_row(rows[1])))
        await wait_until(lambda: len(engine.running) == 2, what="both rows to be judged alone")
        leaving.cancel()  # the client hung up
        await wait_until(lambda: len(engine.running) == 1, what="the leaving row's engine work to be aborted")
        assert (await staying).status_code == 200
    assert len(engine.aborted) == 1


async def test_calls_arriving_while_the_server_shuts_down_get_503():
    app = build_app(Settings(engine="fake"), engine=FakeEngine(delay=0.2))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://grm.test") as client:
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        await app.state.grm.wait_ready(timeout=10)
        running = asyncio.create_task(client.post("/v1/score", json=item(seed=5)))
        await wait_until(lambda: app.state.grm.engine.running, what="a call to be judged")
        closing = asyncio.create_task(lifespan.__aexit__(None, None, None))
        await asyncio.sleep(0)
        late = await client.post("/v1/score", json=ITEM)
        await closing
        cut = await running
    for r in (late, cut):
        assert r.status_code == 503 and error_type(r) == "not_ready", r.text


async def test_a_client_that_cannot_send_headers_may_put_its_key_in_the_url():
    engine = FakeEngine()
    async with running_app(engine, **KEYS) as client:
        ok = await client.post("/get_reward?api_key=key-a", json=one_row("a rollout"))
        wrong = await client.post("/get_reward?api_key=nope", json=one_row("a rollout"))
        none = await client.post("/get_reward", json=one_row("a rollout"))
    assert ok.status_code == 200 and wrong.status_code == none.status_code == 401


async def test_a_key_in_the_url_that_is_not_latin_1_is_a_401_not_a_500():
    async with running_app(FakeEngine(), **KEYS) as client:
        euro = await client.post("/get_reward?api_key=%E2%82%AC", json=one_row("a rollout"))
        invalid = await client.post("/get_reward?api_key=%FF", json=one_row("a rollout"))
    assert euro.status_code == invalid.status_code == 401
