"""The stderr rule's default epsilon is relative to the judge's vote scale (review of issue #31, finding 8).

The default, 0.5, was tuned on deepseek-grm's 1..10 votes. On an A/B judge's 0..1 win-rate votes every
standard error is at most 0.5 once a response has two votes, so ``adaptive: "stderr"`` with the server's
defaults stopped at ``k_min`` whatever the votes said: a pair judged 2 A / 2 B (a coin flip) stopped at 4
of k=16. Unset, the default is now the same share of any judge's scale (0.5 per 9 units: 1/18 on 0..1);
an explicit ``--adaptive-epsilon`` (or a request's ``adaptive_epsilon``) stays in vote units.
"""

from __future__ import annotations

import pytest

from server.engines.fake import FakeEngine
from tests.api.conftest import running_app

COIN_FLIP = {"query": "Q?", "responses": ["a", "b"], "k": 16, "adaptive": "stderr"}


def coin_flip(request) -> list[str]:
    """Samples alternate A and B within each request: the judge cannot tell the two responses apart."""
    return ["[[A]]" if i % 2 == 0 else "[[B]]" for i in range(request.n)]


async def test_a_coin_flip_pair_is_not_stopped_at_k_min_by_the_default_epsilon():
    async with running_app(FakeEngine(coin_flip), judge="skywork-critic") as client:
        reply = await client.post("/v1/score", json=COIN_FLIP)
        info = (await client.get("/v1/info")).json()
    assert reply.status_code == 200, reply.text
    assert (reply.json()["k_used"], reply.json()["stop_reason"]) == (16, "k")  # was (4, "stderr")
    assert info["defaults"]["adaptive_epsilon"] == pytest.approx(1 / 18)  # the effective default, in vote units


async def test_an_explicit_epsilon_stays_in_vote_units():
    async with running_app(FakeEngine(coin_flip), judge="skywork-critic", adaptive_epsilon=0.5) as client:
        reply = await client.post("/v1/score", json=COIN_FLIP)
        info = (await client.get("/v1/info")).json()
    assert (reply.json()["k_used"], reply.json()["stop_reason"]) == (4, "stderr")  # 0.5 of a win rate: loose
    assert info["defaults"]["adaptive_epsilon"] == 0.5


async def test_deepseek_grms_default_is_still_half_a_vote():
    async with running_app(FakeEngine()) as client:
        info = (await client.get("/v1/info")).json()
    assert info["defaults"]["adaptive_epsilon"] == 0.5
