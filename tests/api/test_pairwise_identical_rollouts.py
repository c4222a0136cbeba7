"""Identical one-row calls under a pairwise judge (review of issue #31, finding 7): documented, not changed.

A GRPO group whose rollouts agree (four rollouts all "42"), sent one rollout per call without an
``Idempotency-Key``, is four identical bodies: deduplication runs them as one job (the server cannot tell
a copy from a retry), so the pairwise pool holds one row and every call gets it back ``unpaired``; the
same four rows in one call are judged against each other, a tie. Counting the copies instead would
pair a retry with its original: its answer would change with whether a retry came, and its k samples
would run again, which is what deduplication is there to prevent. docs/judges.md says so and what to
do instead: one call for the group, an ``Idempotency-Key`` per rollout (grm-client's
``idempotency_keys``), or ``--dedup-identical-requests false``. These tests pin each of those.
"""

from __future__ import annotations

import asyncio

import httpx

from server.engines.fake import FakeEngine
from server.pipeline.judges import get_judge
from server.pipeline.judges.testing import judge_script
from tests.api.conftest import running_app

PROMPT = "<|im_start|>user\nWhat is 6*7?<|im_end|>\n<|im_start|>assistant\n"
ROW = {"query": [PROMPT + "42"], "prompts": [PROMPT]}


def engine() -> FakeEngine:
    return FakeEngine(judge_script(get_judge("skywork-critic"), len))


def unscored(answers: list[httpx.Response]) -> list[list[float]]:
    return [a.json()["extra_logs"]["grm_unscored"] for a in answers]


async def test_identical_one_row_calls_without_keys_are_one_job_and_come_back_unpaired():
    judge = engine()
    async with running_app(judge, judge="skywork-critic", k=2, group_window_s=0.3) as client:
        answers = await asyncio.gather(*(client.post("/get_reward", json=ROW) for _ in range(4)))
    assert unscored(answers) == [[1.0]] * 4 and [a.json()["rewards"] for a in answers] == [[0.0]] * 4
    assert judge.requests == []  # one job, one row, nothing to pair it with


async def test_the_same_rollouts_in_one_call_tie():
    async with running_app(engine(), judge="skywork-critic", k=2, group_window_s=0.3) as client:
        together = await client.post("/get_reward", json={"query": [PROMPT + "42"] * 4, "prompts": [PROMPT] * 4})
    assert together.json()["rewards"] == [0.5] * 4 and unscored([together]) == [[0.0] * 4]


async def test_an_idempotency_key_per_rollout_seats_each_copy_and_they_tie():
    async with running_app(engine(), judge="skywork-critic", k=2, group_window_s=0.3) as client:
        answers = await asyncio.gather(
            *(client.post("/get_reward", json=ROW, headers={"Idempotency-Key": f"rollout-{i}"}) for i in range(4))
        )
    assert unscored(answers) == [[0.0]] * 4 and [a.json()["rewards"] for a in answers] == [[0.5]] * 4


async def test_without_deduplication_each_copy_is_seated_and_they_tie():
    settings = {"judge": "skywork-critic", "k": 2, "group_window_s": 0.3, "dedup_identical_requests": False}
    async with running_app(engine(), **settings) as client:
        answers = await asyncio.gather(*(client.post("/get_reward", json=ROW) for _ in range(4)))
    assert unscored(answers) == [[0.0]] * 4 and [a.json()["rewards"] for a in answers] == [[0.5]] * 4
