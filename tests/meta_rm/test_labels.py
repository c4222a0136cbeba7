import pytest

from meta_rm.labels import pair_accuracy, sample_is_correct


def test_correct_only_when_the_preferred_response_is_strictly_highest():
    assert sample_is_correct((8, 3), 0)
    assert not sample_is_correct((3, 8), 0)
    assert not sample_is_correct((7, 7), 0)  # ties are wrong (paper Eq. 10)
    assert sample_is_correct((2, 9, 9 - 1), 1)
    assert not sample_is_correct((9, 9, 1), 1)


def test_an_unparsed_sample_is_wrong():
    assert not sample_is_correct(None, 0)


def test_labelling_needs_two_responses_and_a_valid_index():
    with pytest.raises(ValueError, match="two responses"):
        sample_is_correct((5,), 0)
    with pytest.raises(ValueError, match="out of range"):
        sample_is_correct((5, 4), 2)


def test_pair_accuracy_counts_a_tie_as_half():
    assert pair_accuracy([40.0, 12.0], 0) == 1.0
    assert pair_accuracy([12.0, 40.0], 0) == 0.0
    assert pair_accuracy([20.0, 20.0], 0) == 0.5
    assert pair_accuracy([20.0, 20.0, 20.0], 2) == pytest.approx(1 / 3)
