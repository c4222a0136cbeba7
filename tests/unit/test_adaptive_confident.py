"""Property: adaptive k's ``confident`` rule (stop once full k would likely order every pair as now).

On the deterministic fake judges of the other adaptive property tests (DeepSeek-GRM groups,
``tests/unit/test_adaptive_properties.py``; pairwise judges' pooled means, all aggregations and
pairings, ``tests/unit/test_adaptive_pairwise.py``), full k and ``confident`` run on the same seeds.

Invariants:
* it never stops a group before ``k_min`` samples, never draws beyond k, and every sample it drew is
  one full k drew (stopping keeps a prefix);
* ``delta = 0`` decides like full k: every pair of responses keeps its relation (a rerank its
  ``top_n`` in order), and on any tallies the groups it must draw are exactly ``rank``'s plus those
  below ``k_min`` (it never stops before k unless ``rank`` has proven the order);
* a larger ``delta`` never asks more groups to draw (on any tallies);
* :func:`~server.pipeline.confident.flip_probability` is a probability, 1 for a tie, symmetric in sign.

Cases per property: ``GRM_ADAPTIVE_EXAMPLES`` (default 300; rerank and pairwise halves), derandomised.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from server.pipeline.adaptive import AdaptiveOptions, Tally
from server.pipeline.confident import confident_undecided, flip_probability
from server.pipeline.rank_rule import rank_undecided
from tests.unit import test_adaptive_pairwise as pairwise
from tests.unit import test_adaptive_properties as grm
from tests.unit.test_adaptive_bounds import SCALES

EXAMPLES = grm.EXAMPLES
SETTINGS = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
HALF = settings(SETTINGS, max_examples=max(1, EXAMPLES // 2))


def confident(case: dict, delta: float) -> AdaptiveOptions:
    return AdaptiveOptions("confident", delta=delta, k_min=case["k_min"])


def assert_within_budget(fast, case: dict) -> None:
    """Every group drew at least ``k_min`` (or k) and at most k samples."""
    per_group = Counter(s.group for s in fast.samples)
    for g in range(len(fast.groups)):
        assert min(case["k_min"], case["k"]) <= per_group[g] <= case["k"], (g, per_group)
    assert fast.k_used <= case["k"]


@SETTINGS
@given(case=grm.cases(), delta=st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.5]))
def test_confident_stays_between_k_min_and_k_and_draws_only_full_k_samples(case: dict, delta: float) -> None:
    scorer, _ = grm.scorer(case["max_group_size"], case["meta"])
    full = asyncio.run(scorer.score(grm.spec_of(case, case["responses"], AdaptiveOptions())))
    fast = asyncio.run(scorer.score(grm.spec_of(case, case["responses"], confident(case, delta))))
    assert_within_budget(fast, case)
    assert not grm.drawn(fast) - grm.drawn(full), "an adaptive sample the full k did not draw"
    every_k = len(fast.samples) == case["k"] * len(fast.groups)
    assert fast.stop_reason == ("k" if every_k else "confident")
    event(f"delta={delta} saved={not every_k}")


@SETTINGS
@given(case=grm.cases())
def test_delta_zero_keeps_the_full_k_order(case: dict) -> None:
    scorer, _ = grm.scorer(case["max_group_size"], case["meta"])
    full = asyncio.run(scorer.score(grm.spec_of(case, case["responses"], AdaptiveOptions())))
    fast = asyncio.run(scorer.score(grm.spec_of(case, case["responses"], confident(case, 0.0))))
    assert grm.relations([r.mean_score for r in fast.responses]) == grm.relations(
        [r.mean_score for r in full.responses]
    )
    event(f"saved={fast.k_used < case['k']}")


@HALF
@given(case=grm.reranks())
def test_delta_zero_keeps_a_reranks_top_n_in_order(case: dict) -> None:
    scorer, _ = grm.scorer(case["max_group_size"], case["meta"])
    full, _ = asyncio.run(grm._rerank(scorer, case, AdaptiveOptions()))
    fast, results = asyncio.run(grm._rerank(scorer, case, confident(case, 0.0)))
    assert fast == full
    event(f"saved={any(r.k_used < case['k'] for r in results)}")


@HALF
@given(case=pairwise.cases() | pairwise.cases(n_min=3, decisive=True), delta=st.sampled_from([0.0, 0.05, 0.3]))
def test_confident_on_pooled_pairs_stays_in_budget_and_at_delta_zero_keeps_the_order(case: dict, delta: float) -> None:
    """Pairwise judges: responses judged in several pairs are compared by their pooled means."""
    full, fast = pairwise.both(case, confident(case, delta))
    assert_within_budget(fast, case)
    assert not pairwise.drawn(fast) - pairwise.drawn(full)
    pairwise.assert_balanced(fast)
    if delta == 0:
        assert pairwise.relations([r.mean_score for r in fast.responses]) == pairwise.relations(
            [r.mean_score for r in full.responses]
        )
    event(f"delta={delta} saved={len(fast.samples) < len(full.samples)}")


@st.composite
def decisions(draw: st.DrawFn) -> tuple[list[Tally], list[tuple[int, ...]], int, list[int], bool, int | None, int]:
    """Groups over up to five documents, any scale, meta RM or not: one item (a document may be in
    several groups, as a pairwise judge's), or a rerank's items, each its own documents and the
    anchor (document 0) in every item."""
    low, high = draw(st.sampled_from(SCALES))
    grid = [min(high, low + (high - low) * i / 4) for i in range(5)]
    n_documents = draw(st.integers(2, 5))
    anchored = draw(st.booleans())
    n_groups = draw(st.integers(1, 4))
    tallies, documents, items = [], [], []
    for g in range(n_groups):
        if anchored:  # document d > 0 belongs to item (d - 1) mod groups; the anchor is in all of them
            own = [d for d in range(1, n_documents) if (d - 1) % n_groups == g]
            docs = (0, *draw(st.permutations(own))[: draw(st.integers(0, min(2, len(own))))])
        else:
            size = draw(st.integers(1, min(3, n_documents)))
            docs = tuple(draw(st.permutations(range(n_documents)))[:size])
        size = len(docs)
        k = draw(st.integers(1, 8))
        drawn = draw(st.integers(0, k))
        parsed = draw(st.integers(0, drawn))
        votes = tuple(tuple(draw(st.sampled_from(grid)) for _ in range(size)) for _ in range(parsed))
        k_meta = draw(st.none() | st.integers(1, k))
        ratings = tuple(float(draw(st.integers(0, 3))) for _ in range(parsed)) if k_meta else None
        tallies.append(Tally(k, drawn, votes, size, (low, high), ratings, k_meta))
        documents.append(docs)
        items.append(g if anchored else 0)
    top_n = draw(st.none() | st.integers(1, n_documents))
    return tallies, documents, n_documents, items, anchored, top_n, draw(st.integers(1, 8))


@SETTINGS
@given(case=decisions())
def test_on_any_tallies_delta_zero_is_rank_plus_k_min_and_a_larger_delta_never_draws_more(case) -> None:
    tallies, documents, n, items, anchored, top_n, k_min = case
    kwargs = {"anchored": anchored, "top_n": top_n, "items": items}
    below = {g for g, t in enumerate(tallies) if t.drawn < min(k_min, t.k) and t.remaining > 0}
    assert confident_undecided(tallies, documents, n, 0.0, k_min, **kwargs) == below | rank_undecided(
        tallies, documents, n, **kwargs
    )
    previous = None
    for delta in (0.0, 0.01, 0.1, 0.5, 1.0):
        must = confident_undecided(tallies, documents, n, delta, k_min, **kwargs)
        assert below <= must and (previous is None or must <= previous)
        previous = must


@settings(max_examples=EXAMPLES, derandomize=True)
@given(mean=st.floats(-50, 50), variance=st.floats(0, 100))
def test_flip_probability_is_a_probability_one_on_a_tie_and_symmetric(mean: float, variance: float) -> None:
    for now in (-1, 1):
        p = flip_probability(mean, variance, now)
        assert 0.0 <= p <= 1.0
        assert p == flip_probability(-mean, variance, -now)
    assert flip_probability(mean, variance, 0) == (1.0 if variance > 0 or mean != 0 else 0.0)


def test_a_clear_pair_stops_at_k_min_a_close_one_draws_on_and_a_tie_runs_to_k() -> None:
    """k=16, k_min 4, delta 0.05: 10 against 1 without noise stops after the first round; a one-point
    lead without noise is not settled by four identical votes (the variance floor), but is by ten;
    equal responses tie at every stop point, which only rank settles, at k."""
    grm_scorer, _ = grm.scorer(4, meta=False)

    def run(qualities: tuple[int, int]) -> tuple[int, str, int]:
        case = {"k": 16, "k_min": 4, "seed": 7,
                "responses": tuple(grm.response_text(i, q, 0, 0) for i, q in enumerate(qualities))}  # fmt: skip
        result = asyncio.run(grm_scorer.score(grm.spec_of(case, case["responses"], confident(case, 0.05))))
        return result.k_used, result.stop_reason, result.rounds

    assert run((10, 1)) == (4, "confident", 1)
    assert run((6, 5)) == (10, "confident", 2)
    assert run((5, 5)) == (16, "k", 4)


def test_the_variance_floor_keeps_identical_votes_from_meaning_certainty() -> None:
    """Two identical votes, 6 against 5, at k=16: no observed spread at all, yet not settled at 0.05."""
    tally = Tally(16, 2, ((6.0, 5.0), (6.0, 5.0)), 2, (1, 10))
    assert confident_undecided([tally], [(0, 1)], 2, 0.05, 1) == {0}
