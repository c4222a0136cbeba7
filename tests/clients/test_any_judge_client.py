"""grm-client against the real app serving deepseek-grm, an A/B judge and Nemotron GenRM: unit rewards by the
judge's scale (as the server states it; 1..10 from a server that states none), rerank, /v1/reward, unpaired
rollouts, and the trainer integrations on a judge without a reference slot (one-row calls form pairs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

import grm_client as g
from grm_client._models import parse_item
from grm_client.integrations.nemo_gym import GRMVerifier
from grm_client.integrations.trl import grm_async_reward_func
from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine
from server.pipeline.judges import get_judge
from server.pipeline.judges.testing import judge_script, prompt_of

SCALES = {"deepseek-grm": (1, 10), "skywork-critic": (0, 1), "nemotron-genrm": (1, 5)}
ANSWERS = ["Blue.", "Blue, like a clear sky.", "Blue, the colour of the sky on a clear noon."]
CHATML = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"


@asynccontextmanager
async def served(profile: str, **settings: object) -> AsyncIterator[tuple[g.AsyncGRMClient, FakeEngine]]:
    judge = get_judge(profile)
    engine = FakeEngine(judge_script(judge, len if judge.scale.high == 1 else None))
    app = build_app(Settings(engine="fake", judge=profile, **settings), engine=engine)
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready(timeout=10)
        transport = httpx.ASGITransport(app=app)
        async with g.AsyncGRMClient(base_url="http://grm.test", transport=transport) as client:
            yield client, engine


@pytest.mark.parametrize("profile", list(SCALES))
async def test_unit_rewards_follow_the_scale_the_server_states(profile):
    async with served(profile) as (client, _):
        result = await client.score("Name a colour.", ANSWERS, k=2)
        ranked = await client.rerank("Name a colour.", ANSWERS, k=2)
        rollout = await client.reward(CHATML, ANSWERS[2])
    low, high = SCALES[profile]
    assert result.scale == (low, high)
    means = result.rewards("mean")
    assert result.rewards("unit") == pytest.approx([(m - low) / (high - low) for m in means])  # type: ignore[operator]
    assert [r.index for r in ranked] == [2, 1, 0]
    by_index = {r.index: r.relevance_score for r in ranked}
    assert by_index[2] == pytest.approx(result.rewards("unit")[2])
    assert 0 <= rollout.score <= 1


def test_a_server_that_states_no_scale_is_read_on_1_to_10():
    response = {"index": 0, "score": 14.0, "mean_score": 7.0, "votes": 2, "valid_samples": 2, "status": "ok"}
    old = {"model": "m", "template": "t", "responses": [response], "k": 2, "k_meta": None}
    old |= {"valid_samples": 2, "total_samples": 2}
    client = g.GRMClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=old)))
    result = client.score("q", ["a"])
    assert result.scale == (1, 10) and result.rewards("unit") == [pytest.approx(6 / 9)]
    with pytest.raises(ValueError, match="scale"):
        parse_item(old, "m", "t", [5, 5])


async def test_an_unpaired_rollout_has_no_reward_and_the_missing_value_stands_in():
    async with served("skywork-critic", group_window_s=0.01) as (client, _):
        result = await client.score("Name a colour.", ["Blue."])
    assert result.responses[0].status == "unpaired" and result.rewards("unit", missing=-1.0) == [-1.0]


async def test_trls_one_row_calls_form_pairs_and_a_dataset_reference_is_dropped_for_a_judge_without_the_slot():
    async with served("skywork-critic", group_window_s=1.0) as (client, engine):
        func = grm_async_reward_func(client=client, reference_column="answer", k=2)
        rewards = await func(prompts=["Name a colour."] * 3, completions=ANSWERS, answer=["Blue"] * 3)
    assert rewards == [0.0, 0.5, 1.0]  # circular pairs of the three rollouts: win rates
    judge = get_judge("skywork-critic")
    assert len(engine.requests) == 6 and all(len(judge.shown_responses(prompt_of(q))) == 2 for q in engine.requests)


async def test_trl_still_sends_references_to_deepseek_grm():
    async with served("deepseek-grm", group_window_s=0) as (client, engine):
        func = grm_async_reward_func(client=client, reference_column="answer", k=1)
        await func(prompts=["Name a colour."], completions=["Blue."], answer=["Blue"])
    assert "#### Reference Answer ####\nBlue\n" in engine.requests[0].prompt


async def test_nemo_gyms_verifier_rollouts_meet_in_pairs_on_nemotron_genrm():
    body = {
        "responses_create_params": {"input": [{"role": "user", "content": "Name a colour."}]},
        "expected_answer": "Blue",
    }

    def rollout(text: str) -> dict:
        return {**body, "response": {"output": [{"type": "message", "role": "assistant", "content": text}]}}

    async with served("nemotron-genrm", group_window_s=1.0) as (client, _):
        verifier = GRMVerifier(client=client, k=2)
        rewards = await asyncio.gather(*(verifier.reward(rollout(a)) for a in ANSWERS))
    assert rewards[0] < rewards[2] and all(0 <= r <= 1 for r in rewards)
