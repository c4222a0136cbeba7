"""The A/B judges (RM-R1 instruct and distilled, Skywork-Critic) served end to end on the fake engine
through /v1/score: the fake answers in each profile's own format (``judge_script``), longer is better."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.engines.fake import FakeEngine
from server.pipeline.domain import Message
from server.pipeline.judges import get_judge
from server.pipeline.judges.testing import by_length, judge_script
from tests.api.conftest import running_app

PROFILES = ("rm-r1-instruct", "rm-r1-distilled", "skywork-critic")
LONG, SHORT = "Yes, on a clear day.", "No."  # the fake judge's quality: 1 and 0 (len // 10, capped)


def circular_pairs(n: int) -> list[tuple[int, int]]:
    return [(0, 1)] if n == 2 else [(i, (i + 1) % n) for i in range(n)]


async def score(profile: str, body: dict) -> tuple[dict, FakeEngine]:
    engine = FakeEngine(judge_script(get_judge(profile)))
    async with running_app(engine, judge=profile) as client:
        r = await client.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    return r.json(), engine


@pytest.mark.parametrize("profile", PROFILES)
async def test_two_responses_are_judged_in_both_orders_and_the_longer_wins_every_sample(profile):
    body, engine = await score(profile, {"query": "Is the sky blue?", "responses": [LONG, SHORT], "k": 4, "seed": 1})
    winner, loser = body["responses"]
    assert (winner["mean_score"], winner["votes"], winner["status"]) == (1.0, 4, "ok")
    assert (loser["mean_score"], loser["votes"], loser["status"]) == (0.0, 4, "ok")
    judge = get_judge(profile)
    # One engine request per order, k/2 samples each, in the profile's own chat structure.
    assert sorted(r.n for r in engine.requests) == [2, 2]
    expected = {
        order: judge.render([Message("user", "Is the sky blue?")], [[LONG, SHORT][i] for i in order])
        for order in ((0, 1), (1, 0))
    }
    assert {(r.prompt, r.system) for r in engine.requests} == {(p.user, p.system) for p in expected.values()}


@pytest.mark.parametrize("profile", PROFILES)
async def test_four_responses_are_judged_in_circular_pairs(profile):
    responses = [LONG, SHORT, LONG + "!", SHORT + "!"]
    body, engine = await score(profile, {"query": "Q?", "responses": responses, "k": 4, "return_samples": True})
    pairs = Counter(tuple(sorted(s["responses"])) for s in body["samples"])
    assert pairs == {(0, 1): 4, (1, 2): 4, (2, 3): 4, (0, 3): 4}
    assert [r["mean_score"] for r in body["responses"]] == [1.0, 0.0, 1.0, 0.0]
    assert [r["votes"] for r in body["responses"]] == [8, 8, 8, 8]  # two pairs of k samples each
    assert len(engine.requests) == 8  # 2m requests for a pool of m >= 3


@pytest.mark.parametrize("profile", PROFILES)
async def test_a_multi_turn_conversation_is_judged(profile):
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Is the sky blue?"},
    ]
    body, engine = await score(profile, {"messages": messages, "responses": [SHORT, LONG], "k": 2})
    assert [r["mean_score"] for r in body["responses"]] == [0.0, 1.0]
    assert all("Hello!" in r.prompt for r in engine.requests)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    ("field", "value", "slot"),
    [("reference", "Yes.", "a reference answer"), ("principles", ["Be correct."], "principles")],
)
async def test_a_reference_or_principles_the_judge_has_no_slot_for_get_a_400_naming_it(profile, field, value, slot):
    engine = FakeEngine(judge_script(get_judge(profile)))
    async with running_app(engine, judge=profile) as client:
        r = await client.post("/v1/score", json={"query": "Q?", "responses": [LONG, SHORT], field: value})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request"
    assert f"judge {profile!r} has no slot for {slot}" in error["message"]
    assert engine.requests == []  # refused before any work


async def test_the_default_judge_still_takes_a_reference_and_principles():
    async with running_app(FakeEngine()) as client:
        r = await client.post(
            "/v1/score",
            json={"query": "Q?", "responses": [LONG, SHORT], "reference": "Yes.", "principles": ["Be right."]},
        )
    assert r.status_code == 200


@pytest.mark.parametrize("profile", PROFILES)
async def test_info_names_the_pairwise_judge_its_scale_and_its_sampling(profile):
    async with running_app(FakeEngine(judge_script(get_judge(profile))), judge=profile) as client:
        info = (await client.get("/v1/info")).json()
    assert info["judge"]["name"] == profile and info["judge"]["mode"] == "pairwise"
    assert info["judge"]["scale"] == [0, 1]
    assert (info["judge"]["takes_reference"], info["judge"]["takes_principles"]) == (False, False)
    assert info["defaults"]["temperature"] == 0.0


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    profile=st.sampled_from(PROFILES),
    lengths=st.lists(st.integers(1, 24), min_size=2, max_size=4),
    half_k=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_pair_is_shown_in_both_orders_k_over_2_each_and_votes_its_win_rate(profile, lengths, half_k, seed):
    """Property: for any responses, k and seed, each circular pair gets k/2 samples in each order, and a
    response's mean vote is its win rate over its pairs (the fake judge: longer is better, the first
    shown on a tie, so a tie splits 1/2 once both orders are counted)."""
    responses = ["x" * n for n in lengths]
    k = 2 * half_k
    body, _ = asyncio.run(
        score(profile, {"query": "Q?", "responses": responses, "k": k, "seed": seed, "return_samples": True})
    )
    pairs = circular_pairs(len(responses))
    orders = Counter(tuple(s["permutation"]) for s in body["samples"])
    for a, b in pairs:
        assert orders[(a, b)] == orders[(b, a)] == half_k
    assert sum(orders.values()) == k * len(pairs)
    quality = by_length(get_judge(profile))
    for i, result in enumerate(body["responses"]):
        mine = [(a, b) if a == i else (b, a) for a, b in pairs if i in (a, b)]
        wins = [1.0 if quality(responses[me]) > quality(responses[other]) else 0.0 for me, other in mine]
        ties = [quality(responses[me]) == quality(responses[other]) for me, other in mine]
        expected = sum(0.5 if tie else win for win, tie in zip(wins, ties, strict=True)) / len(mine)
        assert result["mean_score"] == pytest.approx(expected)
        assert result["votes"] == k * len(mine)
