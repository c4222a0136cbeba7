"""A pairwise pool with one rollout too long for the context (review of issue #31, finding 1).

Four one-row ``/get_reward`` calls of one prompt meet in a skywork-critic pool; one rollout is longer
than the context. The pool's pairs with it are refused. Judging each call alone instead (what a
group's calls get) left every one-row call with nothing to pair with: all four came back unpaired
(reward 0.0, unscored) and the long one got a 200, not its own 400. The rows that fit are compared
with each other, as if sent together, and the long one gets the error of its own pairs.
"""

from __future__ import annotations

import asyncio

import httpx

from server.engines.fake import FakeEngine
from server.pipeline.domain import Message
from server.pipeline.judges import get_judge
from server.pipeline.judges.testing import judge_script
from tests.api.conftest import running_app

PROMPT = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
JUDGE = get_judge("skywork-critic")
FITS = ["Blue.", "Sky blue.", "A deep blue."]
TOO_LONG = "x" * 3000


def one_row(response: str) -> dict:
    return {"query": [PROMPT + response], "prompts": [PROMPT]}


def engine() -> FakeEngine:
    """The fake judge (longer wins), with a context every pair of the short rollouts fits and no pair
    with the long one does."""
    longest = max(len(JUDGE.render([Message("user", "Name a colour.")], [a, b]).user) for a in FITS for b in FITS)
    return FakeEngine(judge_script(JUDGE, len), max_model_len=longest + 10)


async def one_call_each(client: httpx.AsyncClient) -> list[httpx.Response]:
    return await asyncio.gather(*(client.post("/get_reward", json=one_row(r)) for r in [*FITS, TOO_LONG]))


async def test_a_rollout_too_long_for_its_pairs_gets_its_own_400_and_the_rest_are_paired():
    async with running_app(engine(), judge="skywork-critic", k=2, group_window_s=0.5) as client:
        answers = await one_call_each(client)
    assert [a.status_code for a in answers] == [200, 200, 200, 400]
    assert answers[3].json()["error"]["type"] == "invalid_request"
    assert "exceeds the context" in answers[3].json()["error"]["message"]
    assert [a.json()["extra_logs"]["grm_unscored"] for a in answers[:3]] == [[0.0]] * 3  # was [1.0]: unpaired
    assert [a.json()["extra_logs"]["grm_group_size"] for a in answers[:3]] == [[3.0]] * 3


async def test_the_rollouts_that_fit_get_what_they_get_sent_together():
    async with running_app(engine(), judge="skywork-critic", k=2, group_window_s=0.5) as client:
        answers = await one_call_each(client)
        together = await client.post(
            "/get_reward", json={"query": [PROMPT + r for r in FITS], "prompts": [PROMPT] * len(FITS)}
        )
    assert together.status_code == 200
    assert [a.json()["rewards"][0] for a in answers[:3]] == together.json()["rewards"] == [0.0, 0.5, 1.0]
