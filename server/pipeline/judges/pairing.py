"""Which prompts an item needs, and how a verdict becomes votes: written once for every judge (pure).

An item's responses are split into *pools* of at most ``max_group_size`` (even sizes,
:func:`server.pipeline.shuffling.split_groups`): responses in different pools are never compared. A
pairwise judge's pools hold at least 2 responses (``max(2, max_group_size)``), and an item of two or more
responses never leaves one alone: with pools of 2 and an odd count, the last pool takes 3.
Within a pool, a judge's mode says which response sets one prompt judges (:func:`judged_sets`):

* ``group``: the pool itself (one prompt shows every response of the pool);
* ``single``: each response alone;
* ``pairwise``: pairs of the pool's responses, by ``pairing``: ``circular`` (each with the next, the
  last with the first: m pairs for a pool of m >= 3, one for 2) or ``all_pairs`` (m(m-1)/2). A pool of
  one response has no pair: that response is left unjudged (``unpaired``).

Each judged set gets k samples whose orders are balanced rotations, so a pair is shown in both orders
equally often (k/2 each; k odd: one order once more) and position bias cancels in the pooled vote.

**Engine requests per pool of m responses**, one per distinct order (equal orders share one ``n=``
request): ``group``: min(k, m); ``single``: m; ``pairwise`` ``circular``: 2m (m >= 3; 2 for m = 2),
``all_pairs``: m(m-1), each at most k/2 samples (k >= 2).

A verdict becomes one vote per shown response (:func:`votes_of`); a response's score is the mean
(and sum) of every vote it received, from every set it was judged in. For pairwise judges the
``aggregation`` says how:

* ``mean``: the judge's own scores (an A/B judge's winner 1, loser 0, so the mean is a win rate;
  Nemotron GenRM's 1-5 helpfulness scores: their mean per pair);
* ``win_rate``: 1 to the response the verdict prefers, 0 to the other, 1/2 each when it prefers none
  (scores equal and no stated preference, or a preference at its midpoint);
* ``tiebreaker``: NeMo Gym's ``simple_tiebreaker`` for judges that state a graded preference
  (Nemotron GenRM): equal scores are moved apart by ``midpoint - preference`` (one up, one down).
"""

from __future__ import annotations

import itertools
from typing import Literal

from server.pipeline.judges.base import Aggregation, Judge, Scale, Verdict
from server.pipeline.shuffling import split_groups

Pairing = Literal["circular", "all_pairs"]
PAIRINGS: tuple[Pairing, ...] = ("circular", "all_pairs")


def pool_size(max_group_size: int, judge: Judge) -> int:
    """The most responses one pool holds: ``max_group_size``, at least 2 for a pairwise judge."""
    return max(2, max_group_size) if judge.mode == "pairwise" else max_group_size


def pools(n_responses: int, max_group_size: int, judge: Judge) -> list[list[int]]:
    """The item's pools (response indices): groups of at most ``max_group_size`` (pairwise: at least 2,
    and never a pool of one beside others, which would leave that response unpaired)."""
    out = split_groups(n_responses, pool_size(max_group_size, judge))
    if judge.mode == "pairwise" and len(out) > 1 and len(out[-1]) == 1:  # pools of 2, an odd count
        out[-2].extend(out.pop())
    return out


def judged_sets(n_responses: int, max_group_size: int, judge: Judge, pairing: Pairing) -> list[tuple[int, ...]]:
    """Every response set one prompt judges, in a fixed order (pool by pool)."""
    sets: list[tuple[int, ...]] = []
    for pool in pools(n_responses, max_group_size, judge):
        if judge.mode == "group":
            sets.append(tuple(pool))
        elif judge.mode == "single":
            sets.extend((i,) for i in pool)
        elif len(pool) >= 2:
            sets.extend(pairs(pool, pairing))
    return sets


def pairs(pool: list[int], pairing: Pairing) -> list[tuple[int, int]]:
    """The pairs of one pool: ``circular`` (each with the next, the last with the first) or ``all_pairs``."""
    if pairing == "all_pairs" or len(pool) == 2:
        return list(itertools.combinations(pool, 2))
    return [(pool[i], pool[(i + 1) % len(pool)]) for i in range(len(pool))]


def states_preference(judge: Judge) -> bool:
    """Whether the judge states a graded preference (what ``tiebreaker`` needs)."""
    return getattr(judge, "preference_midpoint", None) is not None


def vote_scale(judge: Judge, aggregation: Aggregation) -> Scale:
    """The scale of one vote under ``aggregation`` (what ``unit`` rewards and the rules use)."""
    if judge.mode != "pairwise" or aggregation == "mean":
        return judge.scale
    if aggregation == "win_rate":
        return Scale(0, 1)
    midpoint, lowest = judge.preference_midpoint, judge.preference_scale.low  # type: ignore[attr-defined]
    reach = midpoint - lowest
    return Scale(judge.scale.low - reach, judge.scale.high + reach)


def unsupported_aggregation(judge: Judge, aggregation: Aggregation) -> str | None:
    """Why ``aggregation`` does not apply to ``judge`` (None: it does)."""
    if aggregation == "tiebreaker" and not states_preference(judge):
        return f"aggregation 'tiebreaker' needs a judge that states a graded preference; {judge.name!r} does not"
    return None


def votes_of(verdict: Verdict, judge: Judge, aggregation: Aggregation) -> tuple[float, ...]:
    """One vote per shown response from one sample's verdict (see the module docstring)."""
    if judge.mode != "pairwise" or aggregation == "mean":
        return verdict.scores
    first, second = verdict.scores
    midpoint = getattr(judge, "preference_midpoint", None)
    if aggregation == "win_rate":
        if first != second:
            return (1, 0) if first > second else (0, 1)
        if verdict.preference is not None and midpoint is not None and verdict.preference != midpoint:
            return (1, 0) if verdict.preference < midpoint else (0, 1)
        return (0.5, 0.5)
    # tiebreaker
    if first == second and verdict.preference is not None and midpoint is not None:
        adjustment = midpoint - verdict.preference
        return (first + adjustment, second - adjustment)
    return verdict.scores
