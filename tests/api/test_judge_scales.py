"""Every route speaks the judge's vote scale: /v1/score states it, ``unit`` rewards (/get_reward, /v1/reward)
and rerank relevance map the mean vote by it, for deepseek-grm (1..10), an A/B judge (skywork-critic,
0..1) and Nemotron GenRM (1..5). The fake engine answers as each judge (``judge_script``: longer is better).
Before judge profiles' scales reached the routes, unit rewards and relevance were ``(mean - 1) / 9`` for all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from server.engines.fake import FakeEngine
from server.pipeline.judges import get_judge, vote_scale
from server.pipeline.judges.testing import judge_script
from tests.api.conftest import running_app

SCALES = {"deepseek-grm": (1, 10), "skywork-critic": (0, 1), "rm-r1-instruct": (0, 1), "nemotron-genrm": (1, 5)}
PROFILES = ("deepseek-grm", "skywork-critic", "nemotron-genrm")
CHATML = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
# Lengths 5, 21 and 44: the fake's quality low + len // 10 on each judge's scale.
ROLLOUTS = ["Blue.", "Blue, like a clear sky.", "Blue, the colour of the sky on a clear noon."]


@asynccontextmanager
async def serve(profile: str, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    # A/B judges compare lengths outright, so no two of ROLLOUTS tie; the others score len // 10 on their scale.
    judge = get_judge(profile)
    engine = FakeEngine(judge_script(judge, len if judge.scale.high == 1 else None))
    async with running_app(engine, judge=profile, **settings) as client:
        yield client


def unit(profile: str, mean: float) -> float:
    low, high = SCALES[profile]
    return (mean - low) / (high - low)


@pytest.mark.parametrize("profile", list(SCALES))
async def test_a_score_answer_states_the_judges_vote_scale_and_its_means_lie_on_it(profile):
    async with serve(profile) as client:
        single = (await client.post("/v1/score", json={"query": "Q?", "responses": ROLLOUTS, "k": 2})).json()
        batch = (await client.post("/v1/score", json={"items": [{"query": "Q?", "responses": ROLLOUTS[:2]}]})).json()
        info = (await client.get("/v1/info")).json()
    low, high = SCALES[profile]
    assert single["scale"] == batch["scale"] == info["judge"]["scale"] == [low, high]
    assert all(low <= r["mean_score"] <= high for r in single["responses"])
    judge = get_judge(profile)
    assert vote_scale(judge, "mean").low == low  # the scale the answers state is the pipeline's


@pytest.mark.parametrize("profile", PROFILES)
async def test_get_reward_unit_rewards_map_the_mean_vote_by_the_judges_scale(profile):
    rows = {"query": [CHATML + r for r in ROLLOUTS], "prompts": [CHATML] * 3}
    async with serve(profile, k=2) as client:
        means = (await client.post("/get_reward", json={**rows, "reward": "mean"})).json()["rewards"]
        units = (await client.post("/get_reward", json={**rows, "reward": "unit"})).json()["rewards"]
    assert units == pytest.approx([unit(profile, m) for m in means])
    assert all(0 <= u <= 1 for u in units) and units[2] > units[0]
    assert units[2] == pytest.approx(1.0 if profile == "skywork-critic" else unit(profile, means[2]))


@pytest.mark.parametrize("profile", PROFILES)
async def test_v1_reward_score_is_the_unit_reward_on_the_judges_scale(profile):
    async with serve(profile, k=2, group_window_s=1.0, openrlhf_reward="mean") as client:
        answers = await asyncio.gather(
            *(client.post("/v1/reward", json={"prompt": CHATML, "response": r}) for r in ROLLOUTS)
        )
    bodies = [a.json() for a in answers]
    assert [b["group_size"] for b in bodies] == [3, 3, 3]  # rollouts of one prompt met (pairwise: formed pairs)
    assert [b["score"] for b in bodies] == pytest.approx([unit(profile, b["reward"]) for b in bodies])
    assert bodies[2]["score"] > bodies[0]["score"]


@pytest.mark.parametrize("profile", PROFILES)
async def test_rerank_relevance_is_the_mean_mapped_by_the_judges_scale(profile):
    async with serve(profile, k=2) as client:
        body = (await client.post("/v2/rerank", json={"query": "Q?", "documents": ROLLOUTS})).json()
    assert [r["index"] for r in body["results"]] == [2, 1, 0]
    assert body["meta"]["grm"]["scale"] == list(SCALES[profile])
    for r in body["results"]:
        assert r["relevance_score"] == pytest.approx(min(1, max(0, unit(profile, r["mean_score"]))), abs=1e-6)
    assert body["results"][0]["relevance_score"] > body["results"][-1]["relevance_score"]
