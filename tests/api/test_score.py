import asyncio

from server.engines.fake import FakeEngine
from server.pipeline.parsing import continuation_reserve, plan_guidance
from tests.api.conftest import ITEM, item, running_app


async def test_single_item_scores_every_response():
    async with running_app(FakeEngine()) as client:
        r = await client.post("/v1/score", json=ITEM)
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "fake-grm" and body["template"] == "deepseek-grm-default-v1"
    longer, shorter = body["responses"]
    assert longer["score"] > shorter["score"]  # the fake judge prefers longer answers
    assert longer == {
        "index": 0,
        "score": 12.0,
        "mean_score": 3.0,
        "normalized_score": 12.0,
        "votes": 4,
        "valid_samples": 4,
        "status": "ok",
        "group_size": 2,
    }
    assert (body["k_used"], body["stop_reason"], body["rounds"]) == (4, "off", 1)
    assert body["samples"] is None
    assert body["usage"]["generation_tokens"] > 0


async def test_samples_carry_principles_critique_scores_and_order():
    async with running_app(FakeEngine()) as client:
        r = await client.post("/v1/score", json={**ITEM, "return_samples": True})
    samples = r.json()["samples"]
    assert len(samples) == 4
    assert {tuple(s["permutation"]) for s in samples} == {(0, 1), (1, 0)}
    for s in samples:
        assert s["status"] == "parsed" and s["principles"] and s["critique"]
        assert s["scores"] == [3, 1] and s["finish_reason"] == "stop"


async def test_batch_returns_one_result_per_item_in_order():
    items = [ITEM, {**ITEM, "responses": ["a", "b", "c" * 50]}]
    async with running_app(FakeEngine()) as client:
        r = await client.post("/v1/score", json={"items": items})
    assert r.status_code == 200
    out = r.json()["items"]
    assert [len(i["responses"]) for i in out] == [2, 3]
    assert out[1]["responses"][2]["score"] == 24.0


async def test_messages_conversation_is_accepted():
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "joke?"},
        ],
        "responses": ["A pun.", "No."],
        "k": 2,
    }
    engine = FakeEngine()
    async with running_app(engine) as client:
        r = await client.post("/v1/score", json=body)
    assert r.status_code == 200
    assert "User: hi\n\nAssistant: hello\n\nUser: joke?" in engine.requests[0].prompt


async def test_server_defaults_apply_and_request_overrides_win():
    engine = FakeEngine()
    async with running_app(engine, k=6, temperature=0.3, max_tokens=300) as client:
        await client.post("/v1/score", json={"query": "q", "responses": ["a", "b"]})
        first = list(engine.requests)
        await client.post(
            "/v1/score", json={"query": "q", "responses": ["a", "b"], "k": 2, "temperature": 0.9, "max_tokens": 100}
        )
    # Guided two-pass: the first pass gets the budget less the continuation's reserve (small budgets: all of it).
    assert plan_guidance(2, 300).continue_cut and not plan_guidance(2, 100).continue_cut
    assert sum(r.n for r in first) == 6
    assert {(r.temperature, r.max_tokens) for r in first} == {(0.3, 300 - continuation_reserve(2))}
    second = engine.requests[len(first) :]
    assert sum(r.n for r in second) == 2 and {(r.temperature, r.max_tokens) for r in second} == {(0.9, 100)}


async def test_items_larger_than_the_group_size_are_split():
    engine = FakeEngine()
    async with running_app(engine, max_group_size=2) as client:
        r = await client.post(
            "/v1/score", json={"query": "q", "responses": ["a", "bb", "ccc"], "k": 2, "return_samples": True}
        )
    assert r.status_code == 200
    assert {tuple(s["responses"]) for s in r.json()["samples"]} == {(0, 1), (2,)}


async def test_an_item_whose_samples_all_fail_to_parse_is_not_an_http_error():
    async with running_app(FakeEngine(lambda req: ["no verdict"] * req.n)) as client:
        r = await client.post("/v1/score", json={**ITEM, "return_samples": True})
    assert r.status_code == 200
    body = r.json()
    assert [x["status"] for x in body["responses"]] == ["no_valid_samples"] * 2
    assert [x["score"] for x in body["responses"]] == [None, None]
    assert body["samples"][0]["text"] == "no verdict"


async def test_concurrent_requests_reach_the_engine_together():
    engine = FakeEngine(delay=0.05)
    peak = 0
    original = engine.generate

    async def tracking(request):
        nonlocal peak
        task = asyncio.ensure_future(original(request))
        await asyncio.sleep(0)
        peak = max(peak, len(engine.running))
        return await task

    engine.generate = tracking  # type: ignore[method-assign]
    async with running_app(engine) as client:
        rs = await asyncio.gather(*(client.post("/v1/score", json=item(seed=i)) for i in range(5)))
    assert all(r.status_code == 200 for r in rs)
    assert peak >= 5  # five requests x two orders in flight at once, not one after another


async def test_a_reference_answer_renders_the_reference_template_and_nothing_else_changes():
    with_reference, without = FakeEngine(), FakeEngine()
    async with running_app(with_reference) as client:
        r = await client.post("/v1/score", json={**ITEM, "reference": "Yes, when the sky is clear."})
        blank = await client.post("/v1/score", json={**ITEM, "reference": "   "})
        empty = await client.post("/v1/score", json={**ITEM, "reference": ""})
    async with running_app(without) as client:
        await client.post("/v1/score", json=ITEM)
    assert r.status_code == 200, r.text
    assert blank.status_code == 400 and "reference must not be blank" in blank.json()["error"]["message"]
    assert empty.status_code == 422
    got, plain = with_reference.requests[0].prompt, without.requests[0].prompt
    assert "#### Reference Answer ####\nYes, when the sky is clear.\n\n#### Responses to be Scored" in got
    assert "Reference" not in plain and got != plain
