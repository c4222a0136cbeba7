"""``POST /v1/render`` refuses a render whose answer would pass ``--max-render-bytes``, before building it
(review of issue #31, finding 4: a 0.8 MB body answered 52 MB, one at the 8 MiB body limit 520 MB)."""

from __future__ import annotations

import json

from server.engines.fake import FakeEngine
from server.pipeline.domain import Message
from server.pipeline.judges import get_judge
from server.pipeline.scoring import ScoreSpec
from server.serving.rendering import render_estimate
from tests.api.conftest import running_app

# The review's item: every one of its 64 engine requests (16 groups x 4 orders) repeats the 199k question.
ITEM = {"query": "Q" * 199_000, "responses": [f"r{i}" for i in range(64)], "k": 32, "seed": 1}
SMALL = {"query": "Is the sky blue?", "responses": ["Yes.", "No.", "Green."], "k": 4, "seed": 1}


async def post(client, body: dict):
    raw = json.dumps(body).encode()
    return await client.post("/v1/render", content=raw, headers={"content-type": "application/json"})


async def test_a_render_whose_answer_would_pass_the_limit_is_refused_with_413_naming_it():
    async with running_app(FakeEngine(), k=32) as client:
        r = await post(client, {"items": [ITEM] * 8})  # a 1.6 MB body; its answer: about 208 MB on vLLM
    assert r.status_code == 413, (r.status_code, len(r.content))
    error = r.json()["error"]
    assert error["type"] == "too_large"
    assert "max_render_bytes = 134217728 (--max-render-bytes)" in error["message"]


async def test_the_answer_size_is_checked_before_any_prompt_is_built():
    async with running_app(FakeEngine(), k=32) as client:
        scorer = client._transport.app.state.grm.scorer  # type: ignore[attr-defined]

        def no_plan(*args, **kwargs):
            raise AssertionError("a plan was built for a render that is refused")

        scorer.plan = no_plan
        r = await post(client, {"items": [ITEM] * 8})
    assert r.status_code == 413


async def test_a_render_at_the_limit_is_answered_and_one_byte_over_is_refused():
    spec = ScoreSpec((Message("user", SMALL["query"]),), tuple(SMALL["responses"]), 4, 0.5, 1.0, 256)
    estimate, _ = render_estimate(get_judge("deepseek-grm"), 4, [spec])
    async with running_app(FakeEngine(), max_render_bytes=estimate) as client:
        assert (await post(client, SMALL)).status_code == 200
    async with running_app(FakeEngine(), max_render_bytes=estimate - 1) as client:
        assert (await post(client, SMALL)).status_code == 413


async def test_info_lists_the_render_limit():
    async with running_app(FakeEngine(), max_render_bytes=5_000_000) as client:
        info = (await client.get("/v1/info")).json()
    assert info["limits"]["max_render_bytes"] == 5_000_000
