"""Adaptive k: when an item may stop drawing samples (pure).

An adaptive item draws its samples in rounds of whole rotations (every response shown in every
position equally often at each stop point) and, after each round, asks a stopping rule whether the
vote is decided. ``k`` stays the most an item may spend. Rules:

* ``off``: every item draws k samples (the pipeline's plain path, unchanged);
* ``rank``: stop once no outcome of the samples still to come (each voting 1 or 10 on any response,
  or not parsing at all; with a meta RM, rated anywhere) could change the order of the responses (or,
  for a rerank with ``top_n``, the ``top_n`` best and their order). The reported order is then provably the
  one the full k samples would give, continuing from the same samples;
* ``stderr``: stop once every response's mean vote has a standard error at or below ``epsilon``
  (after at least ``k_min`` samples).

No group stops before ``k_min`` samples (rounded up to whole rotations). ``docs/adaptive.md`` says why
these rules and how the defaults were chosen, with the numbers.

With a meta RM, a group that drew ``d`` of its ``k`` samples lets the best ``d * k_meta / k`` of them
vote (the best half by default, as at full k); see :func:`kept_count`.

Vocabulary: a *group* is one GRM prompt's responses (:func:`server.pipeline.shuffling.split_groups`),
a :class:`Tally` is what one group drew so far, and *documents* number the responses of everything
one decision covers (an item's responses, or a rerank's documents spread over anchored groups).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Literal

from meta_rm.selection import select_top_k

StopRule = Literal["off", "rank", "stderr"]
STOP_RULES: tuple[StopRule, ...] = ("off", "rank", "stderr")
# Why an item stopped: "off" (not adaptive, k drawn), the rule that decided early, or "k" (the whole
# budget drawn without the rule deciding earlier).
StopReason = Literal["off", "rank", "stderr", "k"]
_SPREAD = 9  # the most one vote can move two responses apart: 10 for one, 1 for the other


@dataclass(frozen=True)
class AdaptiveOptions:
    """How an item spends its k samples (resolved from the request and the server's defaults)."""

    rule: StopRule = "off"
    epsilon: float = 0.5  # stderr: the largest standard error of a response's mean vote to stop at
    k_min: int = 4  # no group stops before this many samples (rounded up to whole rotations)


def kept_count(drawn: int, k: int, k_meta: int) -> int:
    """How many of a group's ``drawn`` samples vote with a meta RM: ``k_meta`` at full ``k``, the same
    share of fewer samples (``drawn * k_meta // k``, at least one) before it."""
    if drawn >= k:
        return k_meta
    return max(1, drawn * k_meta // k)


@dataclass(frozen=True)
class Tally:
    """What one group drew so far.

    ``votes`` are the parsed samples' scores in the group's response order, in draw order;
    ``ratings`` their meta RM ratings (None without a meta RM, when ``k_meta`` is None too).
    """

    k: int
    drawn: int
    votes: tuple[tuple[float, ...], ...]
    size: int
    ratings: tuple[float, ...] | None = None
    k_meta: int | None = None

    @property
    def remaining(self) -> int:
        return self.k - self.drawn

    def kept(self) -> list[int]:
        """Indices (into ``votes``) of the samples that vote now: all of them without a meta RM, else
        the best-rated :func:`kept_count`, chosen as at full k (:func:`~meta_rm.selection.select_top_k`)."""
        if self.k_meta is None or self.ratings is None:
            return list(range(len(self.votes)))
        return select_top_k([True] * len(self.votes), self.ratings, kept_count(self.drawn, self.k, self.k_meta))

    def sums(self, indices: Sequence[int]) -> tuple[float, ...]:
        return tuple(sum(self.votes[i][j] for i in indices) for j in range(self.size))

    def outcomes(self) -> Iterator[tuple[tuple[float, ...], int, int]]:
        """Every way the full k could end, as ``(sums of the current samples that vote, their count,
        new votes)``: each of the ``new`` votes adds 1..10 to every response.

        Without a meta RM, ``p`` of the remaining samples parse (0..remaining) and all vote. With one,
        the full k keep the ``k_meta`` best-rated parsed samples; the new ones may be rated anywhere,
        so any ``m`` of them (as many as fit) may displace the worst-rated current ones.
        """
        if self.k_meta is None or self.ratings is None:
            current = self.sums(range(len(self.votes)))
            for p in range(self.remaining + 1):
                yield current, len(self.votes), p
            return
        order = _by_rating(self.ratings)
        prefix: list[tuple[float, ...]] = [tuple([0] * self.size)]
        for i in order:
            prefix.append(tuple(a + b for a, b in zip(prefix[-1], self.votes[i], strict=True)))
        parsed = len(self.votes)
        for p in range(self.remaining + 1):
            voters = min(self.k_meta, parsed + p)
            for m in range(max(0, voters - parsed), min(p, voters) + 1):
                yield prefix[voters - m], voters - m, m


def _by_rating(ratings: Sequence[float]) -> list[int]:
    return sorted(range(len(ratings)), key=lambda i: (-ratings[i], i))


# ---- rank: is the order decided? ----


def _sign(x: Fraction | int) -> int:
    return (x > 0) - (x < 0)


def _relations(lo: Fraction, hi: Fraction) -> set[int]:
    """The signs a difference in ``[lo, hi]`` may take."""
    return {s for s, ok in ((1, hi > 0), (0, lo <= 0 <= hi), (-1, lo < 0)) if ok}


@dataclass(frozen=True)
class _Doc:
    """Where a document sits for the rule: its group and position there (the anchor: in every group)."""

    group: int
    local: int


def rank_undecided(
    tallies: Sequence[Tally],
    documents: Sequence[Sequence[int]],
    n_documents: int,
    *,
    anchored: bool = False,
    top_n: int | None = None,
) -> set[int]:
    """The groups that must draw more before the order is decided (empty: it is).

    Args:
        tallies: per group, what it drew.
        documents: per group, the document number of each of its responses.
        n_documents: documents in all.
        anchored: document 0 is in every group and calibrates them (:mod:`server.serving.reranking`):
            documents in different groups compare by their mean minus their group's anchor mean.
        top_n: only the ``top_n`` best must be decided, in their order (None: the whole order).

    The order is by mean vote, best first; a document with no votes comes after every voted one.
    Two documents' relation (above, tied, below) is decided when every outcome of the remaining
    samples (:meth:`Tally.outcomes`) gives the relation reported now. With ``top_n``, the relations
    among the reported top ``top_n`` and between them and the rest must be decided, not those among
    the rest.
    """
    where: dict[int, list[_Doc]] = {}
    for g, docs in enumerate(documents):
        for local, doc in enumerate(docs):
            where.setdefault(doc, []).append(_Doc(g, local))
    open_groups = {g for g, t in enumerate(tallies) if t.remaining > 0}
    undecided_groups = {g for g in open_groups if not tallies[g].votes}  # it may yet vote, or never
    reported = [t.kept() for t in tallies]
    anchor = 0 if anchored else None

    def anchor_in(group: int) -> int | None:
        """The anchor's position in ``group`` (None without anchors)."""
        return None if anchor is None else next(w.local for w in where[anchor] if w.group == group)

    def reported_value(doc: int) -> Fraction | None:
        """What orders the document now: its mean, or with anchors its mean minus its group's anchor mean."""
        if doc == anchor:
            return Fraction(0) if any(reported[d.group] for d in where[doc]) else None
        d = where[doc][0]
        kept = reported[d.group]
        if not kept:
            return None
        sums = tallies[d.group].sums(kept)
        base = anchor_in(d.group)
        return Fraction(sums[d.local] - (0 if base is None else sums[base])) / len(kept)

    values = [reported_value(doc) for doc in range(n_documents)]
    order = sorted(range(n_documents), key=lambda d: (values[d] is None, -(values[d] or 0), d))
    if top_n is not None and top_n < n_documents:
        # The top_n come back best first: their order among themselves, and against the rest.
        top = set(order[:top_n])
        pairs = [(a, b) for a in top for b in range(n_documents) if b not in top or a < b]
    else:
        pairs = [(a, b) for a in range(n_documents) for b in range(a + 1, n_documents)]
    must_draw: set[int] = set()
    for a, b in pairs:
        if anchor in (a, b):
            other = where[b if a == anchor else a][0].group
            # The anchor's own value exists once any group has votes: groups without any yet may give it one.
            involved = {other} | (undecided_groups if values[anchor] is None else set())
        else:
            involved = {where[a][0].group, where[b][0].group}
        if involved & undecided_groups:
            must_draw |= involved & open_groups
            continue
        now = _compare(values[a], values[b])
        if values[a] is None or values[b] is None:  # no votes now and, the group being closed, ever
            possible: frozenset[int] = frozenset({now})
        elif anchor in (a, b):
            d = where[b if a == anchor else a][0]
            sign = 1 if a == anchor else -1
            base = anchor_in(d.group)
            assert base is not None
            possible = frozenset(sign * r for r in _within(tallies[d.group], base, d.local))
        else:
            da, db = where[a][0], where[b][0]
            if da.group == db.group:
                possible = _within(tallies[da.group], da.local, db.local)
            else:
                range_a = _value_range(tallies[da.group], da.local, anchor_in(da.group))
                range_b = _value_range(tallies[db.group], db.local, anchor_in(db.group))
                possible = frozenset(_relations(range_a[0] - range_b[1], range_a[1] - range_b[0]))
        if possible != {now}:
            must_draw |= involved & open_groups
    return must_draw


def _compare(x: Fraction | None, y: Fraction | None) -> int:
    if x is None or y is None:
        return (x is not None) - (y is not None)
    return _sign(x - y)


@lru_cache(maxsize=4096)
def _within(tally: Tally, i: int, j: int) -> frozenset[int]:
    """Relations (1 above, 0 tied, -1 below) responses ``i`` and ``j`` of one group (which has votes)
    may end in: their sums over the same voters, each new vote moving them at most 9 apart."""
    out: set[int] = set()
    for sums, _count, new in tally.outcomes():
        diff = sums[i] - sums[j]
        out |= _relations(Fraction(diff) - _SPREAD * new, Fraction(diff) + _SPREAD * new)
    return frozenset(out)


@lru_cache(maxsize=4096)
def _value_range(tally: Tally, i: int, base: int | None) -> tuple[Fraction, Fraction]:
    """The least and most response ``i``'s mean (minus the anchor's mean at ``base``) can end at, in a
    group that has votes."""
    lo = hi = None
    for sums, count, new in tally.outcomes():
        voters = count + new
        if base is None:
            low, high = (Fraction(sums[i]) + new) / voters, (Fraction(sums[i]) + 10 * new) / voters
        else:
            diff = sums[i] - sums[base]
            low, high = (Fraction(diff) - _SPREAD * new) / voters, (Fraction(diff) + _SPREAD * new) / voters
        lo = low if lo is None else min(lo, low)
        hi = high if hi is None else max(hi, high)
    assert lo is not None and hi is not None
    return lo, hi


@lru_cache(maxsize=256)
def earliest_rank_stop(k: int, k_meta: int | None) -> int:
    """The fewest samples after which ``rank`` could stop a pair at all: every sample so far voting
    10 for one response and 1 for the other. Rounds of ``rank`` start there, not earlier.

    Found by bisection: a lead that is decided stays decided with more samples of the same lead.
    """

    def decided(drawn: int) -> bool:
        tally = Tally(k, drawn, ((10, 1),) * drawn, 2, (0.0,) * drawn if k_meta else None, k_meta)
        return not rank_undecided([tally], [(0, 1)], 2)

    low, high = 1, k  # decided(k) always holds: nothing remains
    while low < high:
        middle = (low + high) // 2
        if decided(middle):
            high = middle
        else:
            low = middle + 1
    return low


def earliest_stderr_stop(k: int, k_meta: int | None) -> int:
    """The fewest samples after which ``stderr`` could stop: two votes per response. With a meta RM
    only ``drawn * k_meta // k`` of them vote, so that is ``2k / k_meta`` samples (k when ``k_meta``
    is 1: one vote has no standard error)."""
    if k_meta is None:
        return min(k, 2)
    if k_meta < 2:
        return k
    return min(k, -(-2 * k // k_meta))


# ---- stderr: is every mean precise enough? ----


def stderr_undecided(tallies: Sequence[Tally], epsilon: float, k_min: int) -> set[int]:
    """The groups that must draw more: fewer than ``k_min`` samples drawn, fewer than two votes, or a
    response whose mean vote has a standard error (sample standard deviation / sqrt(votes)) above
    ``epsilon``."""
    must_draw = set()
    for g, t in enumerate(tallies):
        if t.remaining <= 0:
            continue
        kept = t.kept()
        if t.drawn < min(k_min, t.k) or len(kept) < 2:
            must_draw.add(g)
            continue
        for j in range(t.size):
            votes = [t.votes[i][j] for i in kept]
            if statistics.stdev(votes) / math.sqrt(len(votes)) > epsilon:
                must_draw.add(g)
                break
    return must_draw


# ---- rounds ----


def first_round(options: AdaptiveOptions, size: int, k: int, k_meta: int | None) -> int:
    """Samples a group of ``size`` responses draws in its first round: ``k_min``, and no fewer than the
    rule could stop at (:func:`earliest_rank_stop` for ``rank`` on two or more responses,
    :func:`earliest_stderr_stop` for ``stderr``), in whole rotations, at most ``k``."""
    target = options.k_min
    if options.rule == "rank" and size >= 2:
        target = max(target, earliest_rank_stop(k, k_meta))
    if options.rule == "stderr":
        target = max(target, earliest_stderr_stop(k, k_meta))
    return min(k, _whole_rotations(target, size))


def next_round(drawn: int, size: int, k: int) -> int:
    """Samples a group has drawn after its next round: half of what is left to k, at least one
    rotation and two samples, in whole rotations, at most ``k``. So an item the rule never decides
    takes about log2 of its budget in rounds (k=16: 4 from 4 samples; k=32: 5), not one per rotation,
    and still gets stop points near k, where ``rank`` decides; at k=8 a pair's rounds are 4, 6, 8."""
    step = max(2, size, -(-(k - drawn) // 2))
    return min(k, _whole_rotations(drawn + step, size))


def _whole_rotations(samples: int, size: int) -> int:
    return -(-samples // size) * size
