import pytest

from meta_rm.selection import default_k_meta, order_shares, select_top_k, select_top_k_by_order


def test_keeps_the_highest_rated_samples_in_sample_order():
    assert select_top_k([True] * 4, [0.1, 0.9, -1.0, 0.5], 2) == [1, 3]


def test_unparseable_samples_are_never_kept_even_when_short():
    assert select_top_k([False, True, False], [None, -5.0, None], 2) == [1]


def test_ties_keep_the_earlier_sample():
    assert select_top_k([True] * 3, [1.0, 1.0, 1.0], 2) == [0, 1]


def test_k_meta_larger_than_the_parsed_samples_keeps_them_all():
    assert select_top_k([True, True], [0.0, 1.0], 8) == [0, 1]


@pytest.mark.parametrize(("k", "expected"), [(1, 1), (2, 1), (8, 4), (9, 4), (32, 16)])
def test_default_k_meta_is_half_of_k_at_least_one(k, expected):
    assert default_k_meta(k) == expected


def test_rejects_mismatched_lengths_and_missing_scores():
    with pytest.raises(ValueError, match="2 samples but 1"):
        select_top_k([True, True], [1.0], 1)
    with pytest.raises(ValueError, match="no meta score"):
        select_top_k([True], [None], 1)
    with pytest.raises(ValueError, match="k_meta"):
        select_top_k([True], [1.0], 0)


def test_each_order_keeps_its_share_of_the_voters() -> None:
    orders = [0, 0, 1, 1]
    assert select_top_k_by_order([True] * 4, [5.0, 4.0, 3.0, 2.0], orders, [1, 1]) == [0, 2]


def test_an_order_with_too_few_parsed_samples_does_not_hand_its_share_to_the_other() -> None:
    orders = [0, 0, 1, 1]
    assert select_top_k_by_order([True, True, False, False], [5.0, 4.0, None, None], orders, [1, 1]) == [0]


def test_the_odd_voter_goes_to_the_best_rated_sample_left_one_per_order() -> None:
    assert order_shares(3, [2, 2]) == ([1, 1], 1)
    assert select_top_k_by_order([True] * 4, [1.0, 0.5, 3.0, 2.0], [0, 0, 1, 1], [1, 1], 1) == [0, 2, 3]
