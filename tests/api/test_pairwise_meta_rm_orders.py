"""A meta RM with a pairwise judge keeps both orders of a pair (review of issue #31, finding 6).

A pair is shown in both orders equally often so that a judge's position bias cancels. With a meta RM,
each pair kept its ``k_meta`` best-rated samples whatever their order, so the kept votes could all come
from one order: a judge that always answers [[A]] (position bias and nothing else) then handed the pair
to whichever response the meta RM's favourite order showed first. Each order now keeps its share of the
voters (``k_meta / 2``; an odd one goes to the best-rated sample left), on the plain path and in
adaptive k's rounds alike.
"""

from __future__ import annotations

import pytest

from meta_rm.fake import FakeMetaRM
from server.engines.fake import FakeEngine
from tests.api.conftest import running_app


def always_first(request) -> list[str]:
    return ["[[A]]"] * request.n  # always the response shown first: position bias only


def favours_red_first() -> FakeMetaRM:
    """A meta RM that rates samples higher when "Red." was shown first (any order-sensitive rater)."""
    return FakeMetaRM(lambda t: 1.0 if t.responses[0] == "Red." else 0.0)


@pytest.mark.parametrize("adaptive", ["off", "rank"])
async def test_a_position_biased_judge_gives_a_pair_half_each_whatever_the_meta_rm_favours(adaptive):
    async with running_app(
        FakeEngine(always_first), judge="skywork-critic", meta_rm=favours_red_first(), k=4
    ) as client:
        body = {"query": "Name a colour.", "responses": ["Blue.", "Red."], "adaptive": adaptive}
        reply = await client.post("/v1/score", json=body)
    assert reply.status_code == 200, reply.text
    assert [r["mean_score"] for r in reply.json()["responses"]] == [0.5, 0.5]  # was [0.0, 1.0]


async def test_an_odd_voter_goes_to_the_best_rated_sample_left():
    """k=2, k_meta=1: no order has a whole voter; the meta RM's favourite sample votes."""
    async with running_app(
        FakeEngine(always_first), judge="skywork-critic", meta_rm=favours_red_first(), k=2
    ) as client:
        body = {"query": "Name a colour.", "responses": ["Blue.", "Red."], "return_samples": True}
        reply = await client.post("/v1/score", json=body)
    assert reply.status_code == 200, reply.text
    kept = [s for s in reply.json()["samples"] if s["kept"]]
    assert len(kept) == 1 and kept[0]["meta_score"] == 1.0
