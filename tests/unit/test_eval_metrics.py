import pytest

from grm_eval.metrics import Vote, flips, interleave, meta_rm_accuracy, verdict, voting_accuracy

A, B = (0, 1), (1, 0)


def test_interleave_balances_every_prefix_across_orders():
    pool = [Vote(A, (9, 1))] * 4 + [Vote(B, (2, 8))] * 4
    assert [v.permutation for v in interleave(pool)[:4]] == [A, B, A, B]


def test_voting_at_smaller_k_comes_from_the_same_pool():
    # Order A samples favour response 0; order B samples favour response 1 (a position-biased judge).
    pool = [Vote(A, (9, 1))] * 4 + [Vote(B, (2, 8))] * 4
    assert voting_accuracy(pool, 2, 0, 1) == 1.0  # one sample: the first order only
    assert voting_accuracy(pool, 2, 0, 2) == 1.0  # 9+2 vs 1+8
    assert voting_accuracy(pool, 2, 1, 8) == 0.0


def test_ties_count_half_and_no_parsed_sample_is_a_tie():
    assert voting_accuracy([Vote(A, (5, 5))], 2, 0, 1) == 0.5
    assert voting_accuracy([Vote(A, None), Vote(B, None)], 2, 0, 2) == 0.5
    assert voting_accuracy([Vote(A, (5, 5, 5))], 3, 2, 1) == pytest.approx(1 / 3)


def test_meta_rm_keeps_the_best_rated_half_of_the_first_k():
    pool = [
        Vote(A, (1, 9), meta_score=-1.0),
        Vote(B, (9, 1), meta_score=2.0),
        Vote(A, (8, 2), meta_score=1.0),
        Vote(B, (1, 9), meta_score=-2.0),
    ]
    assert voting_accuracy(pool, 2, 0, 4) == 0.0  # plain voting: 19 vs 21, the wrong one wins
    assert meta_rm_accuracy(pool, 2, 0, 4) == 1.0  # the two trusted samples vote: 17 vs 3
    assert meta_rm_accuracy(pool, 2, 0, 2) == 1.0  # of the first two, the better one (meta 2.0)


def test_flip_rate_compares_the_verdicts_of_the_two_orders():
    biased = [Vote(A, (9, 1)), Vote(B, (2, 8))]  # always prefers whatever is shown first
    fair = [Vote(A, (9, 1)), Vote(B, (8, 2))]
    assert flips(biased, 2) is True and flips(fair, 2) is False
    assert flips([Vote(A, (9, 1))], 2) is None and flips([Vote((0, 1, 2), (1, 2, 3))], 3) is None
    assert verdict([3.0, 3.0]) is None and verdict([1.0, 4.0]) == 1
