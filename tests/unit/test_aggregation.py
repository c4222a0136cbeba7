import pytest

from server.pipeline.aggregation import vote
from server.pipeline.domain import ResponseStatus


def test_votes_are_summed_per_response():
    out = vote([(8, 3), (6, 5), (7, 4)], 2, valid_samples=3)
    assert [r.score for r in out] == [21.0, 12.0]
    assert [r.mean_score for r in out] == [7.0, 4.0]
    assert all(r.votes == 3 and r.valid_samples == 3 and r.status is ResponseStatus.OK for r in out)


def test_sum_spans_k_to_10k():
    assert vote([(1,)] * 8, 1, 8)[0].score == 8
    assert vote([(10,)] * 8, 1, 8)[0].score == 80


def test_no_voters_gives_null_scores_not_an_error():
    out = vote([], 2, valid_samples=0)
    assert all(r.score is None and r.mean_score is None and r.status is ResponseStatus.NO_VALID_SAMPLES for r in out)


def test_votes_can_be_fewer_than_valid_samples():
    out = vote([(9, 1)], 2, valid_samples=4)  # e.g. a meta RM kept one of four parsed samples
    assert out[0].votes == 1 and out[0].valid_samples == 4


def test_wrong_vector_length_is_rejected():
    with pytest.raises(ValueError):
        vote([(1, 2, 3)], 2, 1)
