"""Soft votes' arithmetic: which values a token spells, and a verdict's votes from its slots' distributions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.pipeline.judges import NemotronGenRM, PrometheusAbsolute, SkyworkCritic, Slot, Verdict, votes_of
from server.pipeline.judges.deepseek import DeepSeekGRM
from server.pipeline.soft_values import GRID, Values, classify, on_grid, verdict_votes

ONE_TO_TEN = Values([str(v) for v in range(1, 11)])
LABELS = Values(["A", "B"])


@pytest.mark.parametrize(
    ("spelled", "expected"),
    [
        ("7", ("value", "7")),  # a value no other extends: ends there
        ("10", ("value", "10")),
        ("1", ("open", "1")),  # "1" or the start of "10": the next position decides
        ("1,", ("value", "1")),  # a terminator inside the token ends it
        ("7}", ("value", "7")),
        ("10,", ("value", "10")),
        ("15", ("none", "")),  # runs on into another digit: no value of the scale
        ("11", ("none", "")),
        ("0", ("none", "")),
        (" ", ("none", "")),  # starts no value
        ("the", ("none", "")),
        ("7.5", ("none", "")),  # a point continues a number: 7.5 is no integer of the scale
    ],
)
def test_classify_on_one_to_ten(spelled, expected):
    assert classify(spelled, ONE_TO_TEN) == expected


@pytest.mark.parametrize(
    ("spelled", "expected"),
    [
        ("A", ("value", "A")),
        ("B]]", ("value", "B")),
        ("AB", ("none", "")),
        ("Apple", ("none", "")),
        ("C", ("none", "")),
    ],
)
def test_classify_labels(spelled, expected):
    assert classify(spelled, LABELS) == expected


def test_a_prefix_that_is_no_value_of_its_own_is_open_then_ends_nowhere():
    five_to_ten = Values([str(v) for v in range(5, 11)])
    assert classify("1", five_to_ten) == ("open", "1")
    assert classify("1,", five_to_ten) == ("none", "")  # "1" is not on 5..10
    assert classify("10", five_to_ten) == ("value", "10")


def test_a_winner_slot_votes_each_responses_probability_of_winning():
    slot = Slot(0, 1, ("A", "B"), "winner")
    votes = verdict_votes([slot], [{"A": 0.25, "B": 0.75}], SkyworkCritic(), "mean", 2)
    assert votes == (0.25, 0.75)


def test_pointwise_votes_are_each_slots_expectation():
    judge = DeepSeekGRM()
    slots = [Slot(0, 1, ONE_TO_TEN_TEXTS, "score", 0), Slot(3, 5, ONE_TO_TEN_TEXTS, "score", 1)]
    votes = verdict_votes(slots, [{"7": 0.5, "8": 0.5}, {"10": 0.75, "1": 0.25}], judge, "mean", 2)
    assert votes == (7.5, 7.75)


ONE_TO_TEN_TEXTS = tuple(str(v) for v in range(1, 11))
SCORE_TEXTS = tuple(str(v) for v in range(1, 6))
RANK_TEXTS = tuple(str(v) for v in range(1, 7))
NEMOTRON_SLOTS = [
    Slot(0, 1, SCORE_TEXTS, "score", 0),
    Slot(2, 3, SCORE_TEXTS, "score", 1),
    Slot(4, 5, RANK_TEXTS, "preference"),
]


def distributions(values: tuple[str, ...]) -> st.SearchStrategy[dict[str, float]]:
    """A normalised distribution over some of ``values``."""
    weights = st.dictionaries(st.sampled_from(values), st.floats(0.01, 1.0), min_size=1, max_size=len(values))
    return weights.map(lambda w: {v: p / sum(w.values()) for v, p in w.items()})


@given(
    st.sampled_from(["mean", "win_rate", "tiebreaker"]),
    distributions(SCORE_TEXTS),
    distributions(SCORE_TEXTS),
    distributions(RANK_TEXTS),
)
def test_nemotron_soft_votes_lie_on_the_vote_scale_and_win_rates_sum_to_one(aggregation, first, second, ranking):
    judge = NemotronGenRM()
    votes = verdict_votes(NEMOTRON_SLOTS, [first, second, ranking], judge, aggregation, 2)
    low, high = {"mean": (1, 5), "win_rate": (0, 1), "tiebreaker": (1 - 2.5, 5 + 2.5)}[aggregation]
    assert all(low <= v <= high for v in votes)
    if aggregation == "win_rate":
        assert sum(votes) == pytest.approx(1.0, abs=2 * GRID)


@given(
    st.sampled_from(["mean", "win_rate", "tiebreaker"]),
    st.sampled_from(SCORE_TEXTS),
    st.sampled_from(SCORE_TEXTS),
    st.sampled_from(RANK_TEXTS),
)
def test_a_certain_nemotron_verdict_votes_as_the_hard_one(aggregation, first, second, ranking):
    judge = NemotronGenRM()
    certain = [{first: 1.0}, {second: 1.0}, {ranking: 1.0}]
    hard = votes_of(Verdict((float(first), float(second)), preference=float(ranking)), judge, aggregation)
    assert verdict_votes(NEMOTRON_SLOTS, certain, judge, aggregation, 2) == tuple(hard)


def test_win_rate_weighs_every_combination_of_scores_and_preference():
    judge = NemotronGenRM()
    # P(first wins) = P(4 > 3) + P(tie at 3) * P(ranking says first) = 0.5 + 0.5 * 0.8
    dists = [{"4": 0.5, "3": 0.5}, {"3": 1.0}, {"2": 0.8, "5": 0.2}]
    assert verdict_votes(NEMOTRON_SLOTS, dists, judge, "win_rate", 2) == pytest.approx((0.9, 0.1), abs=GRID)


def test_soft_votes_are_on_the_grid_within_the_scale():
    scale = PrometheusAbsolute().scale
    assert on_grid(5.0000000001, scale) == 5.0
    assert on_grid(0.9999999, scale) == 1.0
    assert on_grid(3.3, scale) / GRID == round(3.3 / GRID)
