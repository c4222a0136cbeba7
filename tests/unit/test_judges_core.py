"""The judge interface's shared pieces: judged sets, votes from verdicts, the fake judge (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from server.engines.base import GenerationRequest
from server.pipeline.domain import Message
from server.pipeline.judges import DeepSeekGRM, Mode, Scale, Verdict, get_judge, judged_sets, vote_scale, votes_of
from server.pipeline.judges.testing import judge_script

PREFERENCE = Scale(1, 6)


@dataclass(frozen=True)
class Pairwise(DeepSeekGRM):
    """DeepSeek-GRM's methods with a pairwise mode, to exercise pairing without another profile."""

    mode: Mode = "pairwise"
    preference_midpoint: float = 3.5
    preference_scale: Scale = PREFERENCE


def test_a_pointwise_group_judge_judges_even_groups_and_a_pairwise_one_pairs_within_pools():
    grm = get_judge("deepseek-grm")
    assert judged_sets(6, 4, grm, "circular") == [(0, 1, 2), (3, 4, 5)]
    pair = Pairwise()
    assert judged_sets(2, 4, pair, "circular") == [(0, 1)]
    assert judged_sets(3, 4, pair, "circular") == [(0, 1), (1, 2), (2, 0)]
    assert judged_sets(3, 4, pair, "all_pairs") == [(0, 1), (0, 2), (1, 2)]
    assert judged_sets(1, 4, pair, "circular") == []  # a lone response has no pair
    assert judged_sets(5, 4, pair, "circular") == [(0, 1), (1, 2), (2, 0), (3, 4)]


@pytest.mark.parametrize(
    ("scores", "preference", "aggregation", "votes"),
    [
        ((4, 3), 2.0, "mean", (4, 3)),
        ((4, 3), 2.0, "win_rate", (1, 0)),
        ((3, 3), 5.0, "win_rate", (0, 1)),
        ((3, 3), 3.5, "win_rate", (0.5, 0.5)),
        ((3, 3), 1.0, "tiebreaker", (5.5, 0.5)),
        ((4, 3), 6.0, "tiebreaker", (4, 3)),  # only equal scores are moved apart
    ],
)
def test_a_pairwise_verdict_becomes_votes_by_the_aggregation(scores, preference, aggregation, votes):
    assert votes_of(Verdict(scores, preference=preference), Pairwise(), aggregation) == votes


def test_vote_scales_follow_the_aggregation():
    assert vote_scale(get_judge("deepseek-grm"), "win_rate") == Scale(1, 10)  # pointwise: its own scale
    assert vote_scale(Pairwise(), "win_rate") == Scale(0, 1)
    assert vote_scale(Pairwise(), "tiebreaker") == Scale(1 - 2.5, 10 + 2.5)


def test_the_fake_judge_answers_in_the_profiles_own_format():
    grm = get_judge("deepseek-grm")
    prompt = grm.render([Message("user", "Q?")], ["short", "a much longer answer"])
    request = GenerationRequest("r", prompt.user, n=2, temperature=0.5, top_p=1.0, max_tokens=64)
    texts = judge_script(grm)(request)
    assert len(texts) == 2 and grm.parse(texts[0], 2).scores == (1, 3)
