"""The adaptive rules' bounds, pure: scale-aware, exact, pooled over the sets judging a response.

* :func:`~server.pipeline.tallies.pooled_range` (Dinkelbach's method) is the exact least and most of
  a pooled mean over every combination of the sets' outcomes (Hypothesis against brute force);
* where ``rank`` and ``stderr`` could first stop is the same on every vote scale, and for
  DeepSeek-GRM's 1..10 what it was before scales (docs/adaptive.md's table);
* a response judged in several pairs is decided on its pooled votes, not its first pair's.
"""

from __future__ import annotations

import itertools
import os
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.pipeline.adaptive import (
    AdaptiveOptions,
    Tally,
    earliest_rank_stop,
    first_round,
    rank_undecided,
    stderr_undecided,
)
from server.pipeline.rank_rule import _ANY, _Ranking
from server.pipeline.tallies import pooled_range

EXAMPLES = int(os.environ.get("GRM_ADAPTIVE_EXAMPLES", "300"))
# Vote scales of the judges: DeepSeek-GRM, win rates, 1..5, Nemotron's tie-breaker on it, and a
# scale whose ends are not binary fractions (exact all the same: Fraction(0.1) is the float's value).
SCALES = [(1, 10), (0, 1), (1, 5), (-1.5, 7.5), (0.1, 0.7)]


@st.composite
def tallies(draw: st.DrawFn) -> Tally:
    """One set's tally with votes now, on a drawn scale and grid, with or without a meta RM."""
    low, high = draw(st.sampled_from(SCALES))
    k = draw(st.integers(1, 6))
    drawn = draw(st.integers(1, k))
    parsed = draw(st.integers(1, drawn))
    size = draw(st.integers(1, 3))
    grid = [min(high, low + (high - low) * i / 4) for i in range(5)]
    votes = tuple(tuple(draw(st.sampled_from(grid)) for _ in range(size)) for _ in range(parsed))
    k_meta = draw(st.none() | st.integers(1, k))
    ratings = tuple(float(draw(st.integers(0, 3))) for _ in range(parsed)) if k_meta else None
    return Tally(k, drawn, votes, size, (low, high), ratings, k_meta)


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None)
@given(sets=st.lists(tallies(), min_size=1, max_size=3), data=st.data())
def test_the_pooled_range_is_the_exact_least_and_most_over_every_combination_of_outcomes(sets, data) -> None:
    placements = tuple((t, data.draw(st.integers(0, t.size - 1))) for t in sets)
    options = []
    for t, j in placements:  # each outcome, with its new votes all at the low end or all at the high end
        options.append([(s[j] + n * t.low, s[j] + n * t.high, c + n) for s, c, n in t.outcomes()])
    lows, highs = [], []
    for combination in itertools.product(*options):
        count = sum(c for _, _, c in combination)
        lows.append(sum(lo for lo, _, _ in combination) / Fraction(count))
        highs.append(sum(hi for _, hi, _ in combination) / Fraction(count))
    assert pooled_range(placements) == (min(lows), max(highs))


@pytest.mark.parametrize("scale", SCALES)
def test_where_rank_and_stderr_could_first_stop_is_the_same_on_every_vote_scale(scale) -> None:
    for k in range(1, 33):
        for k_meta in sorted({None, 1, max(1, k // 2), k}, key=lambda m: m or 0):
            assert earliest_rank_stop(k, k_meta, scale) == earliest_rank_stop(k, k_meta, (1, 10)), (k, k_meta)
            for rule in ("rank", "stderr"):
                options = AdaptiveOptions(rule, k_min=2)  # type: ignore[arg-type]
                assert first_round(options, 2, k, k_meta, scale) == first_round(options, 2, k, k_meta), (k, rule)


def test_deepseek_grms_earliest_rank_stops_are_those_before_vote_scales() -> None:
    """docs/adaptive.md's table (the rule before scales: votes of 10 against 1)."""
    table = {4: (3, 4), 8: (5, 7), 16: (9, 13), 32: (17, 25)}
    assert {k: (earliest_rank_stop(k, None, (1, 10)), earliest_rank_stop(k, k // 2, (1, 10))) for k in table} == table


def test_a_tally_refuses_a_vote_off_its_scale() -> None:
    with pytest.raises(ValueError, match="within"):
        Tally(4, 1, ((1.0, 0.0),), 2, (0.0, 0.5))


def win(first: int, times: int) -> tuple[tuple[float, float], ...]:
    """``times`` samples of a pair, each won by its response ``first`` (0 or 1): win-rate votes."""
    return (((1.0, 0.0) if first == 0 else (0.0, 1.0)),) * times


def test_a_response_judged_in_several_pairs_is_decided_on_all_its_votes_not_its_first_pair() -> None:
    """Circular pairs (0,1), (1,2), (2,0), k=4. The first two are drawn: 0 beat 1 and 1 beat 2 four
    times. The third drew 2 of 4: 2 beat 0 twice. Pooled, 0 has 4/6, 1 has 4/8, 2 has 2/6; if 2 also
    wins the last two samples, 0 ends at 4/8, tied with 1. So the third pair must draw; read by its
    first pair only (as the rule did before pooling), 0 was at 1 for good and nothing had to."""
    scale = (0.0, 1.0)
    sets = [Tally(4, 4, win(0, 4), 2, scale), Tally(4, 4, win(0, 4), 2, scale), Tally(4, 2, win(0, 2), 2, scale)]
    assert rank_undecided(sets, [(0, 1), (1, 2), (2, 0)], 3) == {2}
    finished = [*sets[:2], Tally(4, 4, win(0, 4), 2, scale)]  # the ending that ties 0 with 1
    ranking = _Ranking(finished, [(0, 1), (1, 2), (2, 0)], False, None)
    assert ranking.value(0) == ranking.value(1) == Fraction(1, 2)


def test_stderr_pools_a_responses_votes_over_its_pairs() -> None:
    """Response 0 always wins its first pair and always loses its second: each pair alone has no
    spread, but its pooled votes (four 1s, four 0s) have a standard error of 0.19: both pairs draw on."""
    scale = (0.0, 1.0)
    sets = [Tally(8, 4, win(0, 4), 2, scale), Tally(8, 4, win(0, 4), 2, scale)]
    assert stderr_undecided(sets, 0.1, 2) == set()  # each set on its own
    assert stderr_undecided(sets, 0.1, 2, [(0, 1), (2, 0)]) == {0, 1}
    assert stderr_undecided(sets, 0.3, 2, [(0, 1), (2, 0)]) == set()


def test_a_document_whose_items_anchor_has_no_votes_waits_for_every_anchor_pair() -> None:
    """A pairwise rerank: item 0 judges the anchor 0 with documents 1 and 2 in circular pairs, item 1 the
    anchor with document 3. Neither of item 0's pairs with the anchor parsed (closed, no votes), so the
    reranker shifts documents 1 and 2 by the anchor's mean over items: item 1's, still open. Their
    relation to the anchor depends on it, so item 1's pair draws; once it is closed, the shift is final
    (the anchor won item 1's pair: 1) and document 1 (which won its pair: 1) ties with the anchor."""
    scale = (0.0, 1.0)
    none = Tally(4, 4, (), 2, scale)
    sets = [none, Tally(4, 4, win(0, 4), 2, scale), none, Tally(4, 2, win(0, 2), 2, scale)]
    documents, items = [(0, 1), (1, 2), (2, 0), (0, 3)], [0, 0, 0, 1]
    involved, possible = _Ranking(sets, documents, True, items).relation(0, 1)
    assert (involved, possible) == ({0, 1, 2, 3}, _ANY)
    assert 3 in rank_undecided(sets, documents, 4, anchored=True, items=items)
    closed = [*sets[:3], Tally(4, 4, win(0, 4), 2, scale)]
    assert _Ranking(closed, documents, True, items).relation(0, 1) == ({0, 1, 2, 3}, frozenset({0}))
