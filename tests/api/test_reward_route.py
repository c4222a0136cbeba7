"""``POST /v1/reward``: slime's remote_rm body, one rollout per call (server/api/routes/reward.py)."""

from __future__ import annotations

import asyncio
import math

from server.engines.fake import FakeEngine, shown_responses
from tests.api.conftest import as_python_json, running_app

QUESTION = "Name a colour."
CHATML = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"


async def test_a_rollout_gets_the_reward_score_gives_its_conversation():
    async with running_app(FakeEngine(), k=2, group_window_s=0) as client:
        slime = await client.post("/v1/reward", json={"prompt": CHATML, "response": "Blue.<|im_end|>", "label": None})
        score = await client.post("/v1/score", json={"query": QUESTION, "responses": ["Blue."], "k": 2})
    assert slime.status_code == 200, slime.text
    expected = (score.json()["responses"][0]["mean_score"] - 1) / 9
    assert slime.json() == {"reward": expected, "score": expected, "unscored": False, "group_size": 1, "k_used": 2}


async def test_a_prompt_given_as_messages_and_a_label_reach_the_grm():
    engine = FakeEngine()
    body = {"prompt": [{"role": "user", "content": QUESTION}], "response": "Blue.", "label": 42}
    async with running_app(engine, k=1, group_window_s=0) as client:
        r = await client.post("/v1/reward", json=body)
    assert r.status_code == 200
    (request,) = engine.requests
    assert "#### Reference Answer ####\n42\n" in request.prompt and QUESTION in request.prompt


async def test_concurrent_rollouts_of_one_prompt_share_grm_prompts():
    engine = FakeEngine()
    rollouts = ["Red.", "Blue.", "A deep green.", "Yellow, like the sun."]
    async with running_app(engine, k=2, group_window_s=0.5) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/reward", json={"prompt": CHATML, "response": r}) for r in rollouts)
        )
    assert [a.json()["group_size"] for a in answers] == [4] * 4
    assert all(len(shown_responses(req.prompt)) == 4 for req in engine.requests)


async def test_bad_prompts_and_labels_are_400():
    async with running_app(FakeEngine()) as client:
        assistant_last = await client.post(
            "/v1/reward", json={"prompt": [{"role": "assistant", "content": "hi"}], "response": "x"}
        )
        object_label = await client.post("/v1/reward", json={"prompt": "Q", "response": "x", "label": {"a": 1}})
        missing = await client.post("/v1/reward", json={"prompt": "Q"})
    assert assistant_last.status_code == 400 and object_label.status_code == 400
    assert missing.status_code == 422


async def test_a_nan_label_is_no_reference_answer():
    engine = FakeEngine()
    async with running_app(engine, k=1, group_window_s=0) as client:
        nan = await client.post(
            "/v1/reward", **as_python_json({"prompt": CHATML, "response": "Blue.", "label": math.nan})
        )
        none = await client.post("/v1/reward", **as_python_json({"prompt": CHATML, "response": "Blue.", "label": None}))
    assert nan.status_code == 200 and nan.json() == none.json()
    assert engine.requests[0].prompt == engine.requests[1].prompt
    assert "Reference Answer" not in engine.requests[0].prompt


async def test_a_whole_float_label_is_the_integer_grm_client_sends():
    engine = FakeEngine()
    async with running_app(engine, k=1, group_window_s=0) as client:
        for label in (3.0, 3, "3"):
            r = await client.post(
                "/v1/reward", **as_python_json({"prompt": CHATML, "response": "Blue.", "label": label})
            )
            assert r.status_code == 200
    assert len({req.prompt for req in engine.requests}) == 1
    assert "#### Reference Answer ####\n3\n" in engine.requests[0].prompt
