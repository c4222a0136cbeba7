import random
from collections import Counter

import pytest

from server.pipeline.shuffling import (
    apply_permutation,
    balanced_permutations,
    group_permutations,
    split_groups,
    unpermute_scores,
)


@pytest.mark.parametrize(("n", "k"), [(1, 8), (2, 8), (3, 8), (4, 8), (3, 9), (5, 3), (2, 1)])
def test_each_response_sits_in_each_position_equally_often(n, k):
    perms = balanced_permutations(n, k, random.Random(0))
    assert len(perms) == k
    assert all(sorted(p) == list(range(n)) for p in perms)
    for position in range(n):
        counts = Counter(p[position] for p in perms)
        per_response = [counts.get(r, 0) for r in range(n)]
        assert max(per_response) - min(per_response) <= 1
        if k % n == 0:
            assert set(per_response) == {k // n}


def test_same_seed_same_orders_and_orders_vary_with_seed():
    assert balanced_permutations(4, 8, random.Random(3)) == balanced_permutations(4, 8, random.Random(3))
    seen = {tuple(balanced_permutations(4, 4, random.Random(s))) for s in range(20)}
    assert len(seen) > 1


def test_identical_permutations_are_grouped_with_counts():
    perms = balanced_permutations(2, 8, random.Random(1))
    groups = group_permutations(perms)
    assert sorted(c for _, c in groups) == [4, 4]
    assert {p for p, _ in groups} == {(0, 1), (1, 0)}


def test_scores_map_back_to_the_callers_order():
    responses = ["a", "b", "c"]
    perm = (2, 0, 1)
    shown = apply_permutation(responses, perm)
    assert shown == ["c", "a", "b"]
    # the judge scores what it saw: c=9, a=1, b=5
    assert unpermute_scores([9, 1, 5], perm) == (1, 5, 9)


def test_unpermute_rejects_wrong_length():
    with pytest.raises(ValueError):
        unpermute_scores([1, 2], (0, 1, 2))


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [
        (2, 4, [[0, 1]]),
        (4, 4, [[0, 1, 2, 3]]),
        (5, 4, [[0, 1, 2], [3, 4]]),
        (10, 4, [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]),
    ],
)
def test_groups_are_as_even_as_possible(n, size, expected):
    assert split_groups(n, size) == expected
