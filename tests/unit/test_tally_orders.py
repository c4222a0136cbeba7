"""Property: a pair's tally with a meta RM and per-order shares (:class:`~server.pipeline.tallies.Tally`
``orders``) lists every way its full k can end.

A pairwise judge's pair keeps each order's share of the ``k_meta`` voters (review of issue #31, finding
6), so adaptive k's rules must bound where its votes can end under that selection. Hypothesis draws a
pair's tally part-way (k 1-8, any k_meta, votes and ratings now) and a future for its remaining samples
(each unparseable, or parsed with a rating above, between or below the current ones); the selection the
plain path makes at full k (:func:`~meta_rm.selection.select_top_k_by_order`) must be one of
:meth:`Tally.outcomes`: the same current samples' sums and count, and as many new voters.
"""

from __future__ import annotations

import os
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from meta_rm.selection import order_shares, select_top_k_by_order
from server.pipeline.tallies import Tally

EXAMPLES = int(os.environ.get("GRM_ADAPTIVE_EXAMPLES", "300"))


@st.composite
def ended(draw: st.DrawFn) -> tuple[Tally, list[tuple[int, float]]]:
    """A tally of a pair part-way, and its full k: (order, rating) of every parsed sample, current first."""
    k = draw(st.integers(1, 8))
    drawn = draw(st.integers(0, k))
    k_meta = draw(st.integers(1, k))
    grid = [0.0, 0.5, 1.0]
    current = [i for i in range(drawn) if draw(st.booleans())]  # the draws that parsed
    votes = tuple((draw(st.sampled_from(grid)), draw(st.sampled_from(grid))) for _ in current)
    ratings = tuple(float(draw(st.integers(0, 4))) for _ in current)
    tally = Tally(k, drawn, votes, 2, (0.0, 1.0), ratings, k_meta, tuple(i % 2 for i in current))
    future = [
        (i % 2, draw(st.sampled_from([-1.0, 0.5, 1.5, 2.5, 3.5, 9.0]))) for i in range(drawn, k) if draw(st.booleans())
    ]
    return tally, future


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None)
@given(case=ended())
def test_the_full_k_selection_is_one_of_the_tallys_outcomes(case) -> None:
    tally, future = case
    assert tally.orders is not None and tally.ratings is not None and tally.k_meta is not None
    orders = [*tally.orders, *(o for o, _ in future)]
    ratings = [*tally.ratings, *(r for _, r in future)]
    shares, leftover = order_shares(tally.k_meta, tally.drawn_by_order(tally.k))
    kept = select_top_k_by_order([True] * len(orders), ratings, orders, shares, leftover)
    old = [i for i in kept if i < len(tally.votes)]
    sums = tuple(sum((Fraction(tally.votes[i][j]) for i in old), Fraction(0)) for j in range(2))
    assert (sums, len(old), len(kept) - len(old)) in set(tally.outcomes())
