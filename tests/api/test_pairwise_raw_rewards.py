"""Raw rewards of a pairwise judge do not count a response's pairs (review of issue #31, finding 3).

A pairwise judge judges a response in every pair its pool gives it: two circular pairs in a pool of
three, one in a pool of two. ``raw`` summed the votes over all of them, so within one call of five
rollouts (pools of 3 and 2) a rollout that won one of its two pairs got the reward of one that won its
only pair, and the best rollout twice that. ``raw`` is now the mean times the votes one judged set gives
at full k (k, or k_meta), as adaptive k's ``normalized_score`` is.
"""

from __future__ import annotations

import httpx

import grm_client as g
from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine
from server.pipeline.judges import get_judge
from server.pipeline.judges.testing import judge_script
from tests.api.conftest import running_app

PROMPT = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
R = [f"Colour {i}: {'very ' * i}blue." for i in range(5)]  # longer is better
ROWS = [R[4], R[0], R[1], R[2], R[3]]  # pools [R4, R0, R1] (circular: 2 pairs each) and [R2, R3] (1 pair)


def engine() -> FakeEngine:
    return FakeEngine(judge_script(get_judge("skywork-critic"), len))


async def test_raw_rewards_are_the_win_rate_times_k_whatever_pairs_a_pool_gave_a_rollout():
    async with running_app(engine(), judge="skywork-critic", k=2, openrlhf_reward="raw") as client:
        reply = await client.post("/get_reward", json={"query": [PROMPT + r for r in ROWS], "prompts": [PROMPT] * 5})
    assert reply.status_code == 200, reply.text
    # R4 won both its pairs, R0 neither, R1 one of two, R2 lost its one pair, R3 won it: k=2 votes per set.
    assert reply.json()["rewards"] == [2.0, 0.0, 1.0, 0.0, 2.0]  # was [4.0, 0.0, 2.0, 0.0, 2.0]


async def test_score_answers_state_the_judge_mode_and_grm_client_raw_rewards_agree():
    app = build_app(Settings(engine="fake", judge="skywork-critic", k=2), engine=engine())
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready(timeout=10)
        client = g.AsyncGRMClient(base_url="http://grm.test", transport=httpx.ASGITransport(app=app))
        async with client:
            result = await client.score("Name a colour.", [R[4], R[0], R[1]])
    assert result.judge_mode == "pairwise"
    assert [r.score for r in result.responses] == [4.0, 0.0, 2.0]  # the sum over its two pairs, as before
    assert result.rewards("raw") == [2.0, 0.0, 1.0]  # each a win rate times k
