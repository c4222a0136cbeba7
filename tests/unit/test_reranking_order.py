"""server.serving.reranking: the order of the ranked documents and group planning (pure, no app)."""

import pytest

from server.pipeline.domain import ItemResult, ResponseScore, ResponseStatus
from server.serving.reranking import ANCHOR, plan_groups, rank


def judged(mean: float, votes: int = 2) -> ResponseScore:
    return ResponseScore(mean * votes, mean, votes, votes, ResponseStatus.OK)


def unjudged() -> ResponseScore:
    return ResponseScore(None, None, 0, 0, ResponseStatus.NO_VALID_SAMPLES)


def group(*scores: ResponseScore) -> ItemResult:
    return ItemResult(responses=list(scores), samples=[], k=2)


def test_calibrated_means_above_ten_rank_by_the_unclamped_mean():
    # The anchor reads 1 in the first group and 3 in the second: the first group's means move up by 1,
    # so its documents' votes of 9.5 and 10 become 10.5 and 11.0. Both clamp to relevance 1.
    groups = [[ANCHOR, 1, 2], [ANCHOR, 3]]
    results = [group(judged(1), judged(9.5), judged(10)), group(judged(3), judged(5))]
    ranked = rank(groups, results, 4)
    by_index = {d.index: d for d in ranked}
    assert by_index[1].mean_score == pytest.approx(10.5) and by_index[2].mean_score == pytest.approx(11.0)
    assert by_index[1].relevance == by_index[2].relevance == 1.0
    assert [d.index for d in ranked][:2] == [2, 1]


def test_relevance_stays_clamped_to_the_unit_range_while_the_mean_leaves_one_to_ten():
    groups = [[ANCHOR, 1], [ANCHOR, 2]]
    results = [group(judged(1), judged(10)), group(judged(3), judged(1))]  # shifts +1 and -1
    ranked = {d.index: d for d in rank(groups, results, 3)}
    assert ranked[1].mean_score == pytest.approx(11.0) and ranked[1].relevance == 1.0
    assert ranked[2].mean_score == pytest.approx(0.0) and ranked[2].relevance == 0.0


def test_an_unjudged_document_never_precedes_a_judged_one_even_with_a_lower_index():
    # Document 1's only vote is a 1 (relevance 0, like the unjudged one); document 0 never parsed.
    ranked = rank([[0], [1]], [group(unjudged()), group(judged(1))], 2)
    assert [d.index for d in ranked] == [1, 0]
    assert ranked[1].mean_score is None and ranked[1].votes == 0 and ranked[1].relevance == 0.0


def test_a_judged_document_calibrated_below_one_still_precedes_an_unjudged_one():
    # The anchor reads 1 and 3: the second group's means move down by 1, document 2's vote of 1 to 0.
    groups = [[ANCHOR, 1], [ANCHOR, 2, 3]]
    results = [group(judged(1), unjudged()), group(judged(3), judged(1), judged(2))]
    ranked = rank(groups, results, 4)
    assert [d.index for d in ranked] == [0, 3, 2, 1]


def test_equal_calibrated_means_keep_the_callers_order_despite_float_noise():
    # Anchor means 1, 8, 1 (overall 10/3): documents 1 and 2 vote like the anchor in their groups, so
    # all three calibrate to 10/3, which floats give as 3.3333333333333335 and 3.333333333333334.
    groups = [[ANCHOR, 1], [ANCHOR, 2], [ANCHOR, 3]]
    results = [group(judged(1), judged(1)), group(judged(8), judged(8)), group(judged(1), judged(5))]
    ranked = rank(groups, results, 4)
    assert [d.index for d in ranked] == [3, 0, 1, 2]


def test_group_size_one_judges_each_document_alone_without_an_anchor():
    assert plan_groups(3, 1, anchor=True) == [[0], [1], [2]]
    assert plan_groups(3, 1, anchor=False) == [[0], [1], [2]]


def test_singleton_groups_are_ranked_without_a_calibration_shift():
    groups = plan_groups(3, 1, anchor=True)
    ranked = rank(groups, [group(judged(4)), group(judged(7)), group(judged(2))], 3)
    assert [(d.index, d.mean_score) for d in ranked] == [(1, 7.0), (0, 4.0), (2, 2.0)]
