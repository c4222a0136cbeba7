"""``POST /v1/render``: the engine requests a /v1/score body would send, exactly, without generating."""

from __future__ import annotations

import asyncio

import pytest

from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine
from server.pipeline.judges import get_judge
from server.pipeline.judges.testing import judge_script
from tests.api.conftest import running_app

PROFILES = ("deepseek-grm", "rm-r1-instruct", "skywork-critic", "nemotron-genrm")
BODY = {"query": "Is the sky blue?", "responses": ["Yes.", "No, green.", "Only at noon."], "k": 4, "seed": 11}


def sent(request: GenerationRequest) -> tuple:
    """What an engine request carries, its id aside."""
    return (
        request.prompt, request.system, request.messages, request.raw, request.n, request.temperature,
        request.top_p, request.max_tokens, request.seed, request.guide_regex,
    )  # fmt: skip


def rendered(r: dict) -> tuple:
    messages = None if r["messages"] is None else tuple((m["role"], m["content"]) for m in r["messages"])
    return (
        r["prompt"], r["system"], messages, r["raw"], r["n"], r["temperature"], r["top_p"], r["max_tokens"],
        r["seed"], r["guide_regex"],
    )  # fmt: skip


@pytest.mark.parametrize("profile", PROFILES)
async def test_render_answers_the_requests_a_seeded_score_call_sends(profile):
    engine = FakeEngine(judge_script(get_judge(profile)))
    async with running_app(engine, judge=profile) as client:
        render = await client.post("/v1/render", json=BODY)
        assert render.status_code == 200, render.text
        assert engine.requests == []  # nothing was generated
        await client.post("/v1/score", json=BODY)
    body = render.json()
    assert sorted(map(rendered, body["requests"]), key=repr) == sorted(map(sent, engine.requests), key=repr)
    assert body["judge"] == profile and body["model"] == "fake-grm" and body["token_counts"] == "approximate"
    assert body["template"] == get_judge(profile).template_name(principles=False, reference=False)
    for r in body["requests"]:
        assert sorted(r["order"]) == sorted(r["responses"])
        assert r["prompt_tokens"] == len(r["prompt"].split())  # the fake's count, as its usage reports
        assert r["text"] is None  # the fake has no chat template to apply


async def test_a_pairwise_render_lists_each_pair_in_both_orders():
    async with running_app(FakeEngine(), judge="skywork-critic") as client:
        body = (await client.post("/v1/render", json=BODY)).json()
    orders = sorted(tuple(r["order"]) for r in body["requests"])
    assert orders == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert {r["n"] for r in body["requests"]} == {2}  # k/2 samples per order
    assert all(r["guide_regex"] == "\\[\\[(A|B)\\]\\]" for r in body["requests"])


async def test_a_batch_renders_every_item_and_a_lone_pairwise_response_renders_nothing():
    body = {"items": [BODY, {"query": "Q?", "responses": ["alone"]}, {**BODY, "principles": ["Be brief."]}]}
    async with running_app(FakeEngine(), judge="nemotron-genrm") as client:
        answer = (await client.post("/v1/render", json=body)).json()
    first, lone, rubric = answer["items"]
    assert len(first["requests"]) == 6 and lone["requests"] == []
    assert rubric["template"] == "nemotron-genrm-principle-v1"
    assert all(r["messages"][1] == {"role": "principle", "content": "Be brief."} for r in rubric["requests"])


async def test_render_validates_like_score_and_is_not_a_scoring_call():
    async with running_app(FakeEngine(), judge="skywork-critic") as client:
        too_many = await client.post("/v1/render", json={**BODY, "k": 10_000})
        reference = await client.post("/v1/render", json={**BODY, "reference": "Yes."})
        schema = await client.post("/v1/render", json={"query": "Q?"})
        metrics = (await client.get("/metrics")).text
    assert too_many.status_code == 400 and "max_k" in too_many.json()["error"]["message"]
    assert reference.status_code == 400 and "no slot for a reference answer" in reference.json()["error"]["message"]
    assert schema.status_code == 422
    assert "/v1/render" not in metrics  # not counted with the scoring routes


async def test_render_is_503_until_the_engine_is_up():
    gate = asyncio.Event()

    class SlowStart(FakeEngine):
        async def start(self) -> None:
            await gate.wait()
            await super().start()

    async with running_app(SlowStart(), wait_ready=False) as client:
        r = await client.post("/v1/render", json=BODY)
        gate.set()
    assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"


async def test_the_fake_engine_renders_a_raw_prompt_as_is():
    engine = FakeEngine()
    await engine.start()
    raw = GenerationRequest("r", "<s>[INST] Judge this. [/INST]", n=1, temperature=0, top_p=1, max_tokens=64, raw=True)
    out = await engine.render(raw)
    assert (out.text, out.prompt_tokens, out.exact) == ("<s>[INST] Judge this. [/INST]", 4, False)
