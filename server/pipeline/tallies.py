"""What a judged set drew so far, and where its votes can still end (pure, exact).

A :class:`Tally` is one judged set's parsed samples (a *group*: one prompt's responses, a single
response, or a pair) and the scale of one vote (:func:`~server.pipeline.judges.pairing.vote_scale`).
Adaptive k's rules (:mod:`server.pipeline.adaptive`) ask it how the full k could end
(:meth:`Tally.outcomes`) and bound, exactly, what a response's mean can end at:

* :func:`within`: the relations two responses of one group may end in (they share every voter);
* :func:`value_range`: the least and most one response's mean (minus another's of the same group:
  a rerank's anchor) can end at;
* :func:`pooled_range`: the least and most a response's *pooled* mean can end at, over every set it
  is judged in (a pairwise judge's pairs): the sum of its votes in all of them over their count.
  That is a ratio of sums with one outcome chosen per set; its minimum (maximum) is found exactly by
  Dinkelbach's method, in :class:`~fractions.Fraction`.

Arithmetic is exact: votes are floats (binary fractions), and ``Fraction(float)`` is their exact
value, so every bound is the true bound of the outcomes described, not a rounded one.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache

from meta_rm.selection import order_shares, select_top_k_by_order

# The range of one vote, (low, high): a judge's vote scale under its aggregation
# (:func:`server.pipeline.judges.pairing.vote_scale`), as a pair so that this module needs no judge.
VoteScale = tuple[float, float]


@lru_cache(maxsize=4096)
def exact(vote: float) -> Fraction:
    """A vote's exact value (``Fraction(vote)``), converted once: votes take few distinct values, and a
    large pool's rule reads hundreds of thousands of them per round."""
    return Fraction(vote)


def kept_count(drawn: int, k: int, k_meta: int) -> int:
    """How many of a group's ``drawn`` samples vote with a meta RM: ``k_meta`` at full ``k``, the same
    share of fewer samples (``drawn * k_meta // k``, at least one) before it."""
    if drawn >= k:
        return k_meta
    return max(1, drawn * k_meta // k)


@dataclass(frozen=True)
class Tally:
    """What one group drew so far.

    ``votes`` are the parsed samples' votes in the group's response order, in the plain path's sample
    order; ``scale`` the range of one vote, ``(low, high)`` (every vote lies in it: the rules' bounds
    rest on that);
    ``ratings`` their meta RM ratings (None without a meta RM, when ``k_meta`` is None too);
    ``orders``, for a pairwise judge's pair, the order each showed the pair in (its index among the
    set's rotations, drawn in turn: order ``o`` at draws ``o, o + size, ...``): each order then keeps
    its share of the voters (:func:`~meta_rm.selection.order_shares`), so that position bias cancels;
    None: the best-rated of all vote.

    Raises:
        ValueError: if a vote lies outside ``scale`` or has the wrong length, or ``orders`` does not
            match ``votes``.
    """

    k: int
    drawn: int
    votes: tuple[tuple[float, ...], ...]
    size: int
    scale: VoteScale
    ratings: tuple[float, ...] | None = None
    k_meta: int | None = None
    orders: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for vote in self.votes:
            if len(vote) != self.size or not all(self.scale[0] <= v <= self.scale[1] for v in vote):
                raise ValueError(f"vote {vote} is not {self.size} values within {self.scale}")
        if self.orders is not None and (
            len(self.orders) != len(self.votes) or not set(self.orders) <= set(range(self.size))
        ):
            raise ValueError(f"orders {self.orders} do not match {len(self.votes)} votes of {self.size} rotations")

    @property
    def remaining(self) -> int:
        return self.k - self.drawn

    @property
    def low(self) -> Fraction:
        return Fraction(self.scale[0])

    @property
    def high(self) -> Fraction:
        return Fraction(self.scale[1])

    def kept(self) -> list[int]:
        """Indices (into ``votes``) of the samples that vote now: all of them without a meta RM, else
        the best-rated :func:`kept_count` (with ``orders``, each order's share of it), chosen as at
        full k (:func:`~meta_rm.selection.select_top_k_by_order`)."""
        if self.k_meta is None or self.ratings is None:
            return list(range(len(self.votes)))
        shares, leftover = order_shares(kept_count(self.drawn, self.k, self.k_meta), self.drawn_by_order(self.drawn))
        return select_top_k_by_order([True] * len(self.votes), self.ratings, self._order_of, shares, leftover)

    def drawn_by_order(self, drawn: int) -> list[int]:
        """Of the first ``drawn`` samples, how many showed each order (all one order without ``orders``)."""
        if self.orders is None:
            return [drawn]
        return [len(range(o, drawn, self.size)) for o in range(min(self.size, self.k))]

    @property
    def _order_of(self) -> tuple[int, ...]:
        return self.orders if self.orders is not None else (0,) * len(self.votes)

    def sums(self, indices: Sequence[int]) -> tuple[Fraction, ...]:
        """Each response's exact sum of the votes of samples ``indices`` (each distinct vote times its
        count: votes repeat, and exact additions are what a large pool's rule spends its time on)."""
        out = []
        for j in range(self.size):
            counts = Counter(self.votes[i][j] for i in indices)
            out.append(sum((exact(v) * n for v, n in counts.items()), Fraction(0)))
        return tuple(out)

    @cached_property
    def kept_sums(self) -> tuple[Fraction, ...]:
        """Each response's exact sum of the votes that count now (:meth:`kept`)."""
        return self.sums(self.kept())

    def outcomes(self) -> Iterator[tuple[tuple[Fraction, ...], int, int]]:
        """Every way the full k could end (:meth:`_outcomes`), listed once per tally: the rule asks
        for each of a set's responses, at both ends of the scale."""
        return iter(self._listed_outcomes)

    @cached_property
    def _listed_outcomes(self) -> tuple[tuple[tuple[Fraction, ...], int, int], ...]:
        return tuple(dict.fromkeys(self._outcomes()))  # each once: orders' endings often sum alike

    def _outcomes(self) -> Iterator[tuple[tuple[Fraction, ...], int, int]]:
        """Every way the full k could end, as ``(sums of the current samples that vote, their count,
        new votes)``: each of the ``new`` votes adds anything in ``scale`` to every response.

        Without a meta RM, ``p`` of the remaining samples parse (0..remaining) and all vote. With one,
        the full k keep the ``k_meta`` best-rated parsed samples; the new ones may be rated anywhere,
        so any ``m`` of them (as many as fit) may displace the worst-rated current ones. With
        ``orders``, that holds for each order and its share, and the orders end independently.
        """
        if self.k_meta is None or self.ratings is None:
            current = self.kept_sums  # every parsed sample votes
            for p in range(self.remaining + 1):
                yield current, len(self.votes), p
            return
        ratings, zero = self.ratings, tuple([Fraction(0)] * self.size)
        at_k, now = self.drawn_by_order(self.k), self.drawn_by_order(self.drawn)
        prefixes: list[list[tuple[Fraction, ...]]] = []  # per order: sums of its best-rated 0, 1, 2, ... samples
        parsed: list[int] = []
        for o in range(len(at_k)):
            mine = sorted((i for i, order in enumerate(self._order_of) if order == o), key=lambda i: (-ratings[i], i))
            prefix = [zero]
            for i in mine:
                prefix.append(tuple(a + exact(b) for a, b in zip(prefix[-1], self.votes[i], strict=True)))
            prefixes.append(prefix)
            parsed.append(len(mine))
        shares, leftover = order_shares(self.k_meta, at_k)
        endings: dict[tuple[tuple[int, ...], int], None] = {}  # (current voters per order, new voters)
        for odd in itertools.combinations(range(len(at_k)), leftover):  # whichever orders the odd voters go to
            per_order = []
            for o, share in enumerate(shares):
                quota, ends = share + (o in odd), set[tuple[int, int]]()
                for p in range(at_k[o] - now[o] + 1):
                    voters = min(quota, parsed[o] + p)
                    ends.update((voters - m, m) for m in range(max(0, voters - parsed[o]), min(p, voters) + 1))
                per_order.append(sorted(ends))
            for ending in itertools.product(*per_order):
                endings[tuple(a for a, _ in ending), sum(m for _, m in ending)] = None
        for voting, new in endings:
            if self.votes and sum(voting) + new == 0:
                continue  # an odd voter given to an order with none to give: the others' best votes then
            chosen = [prefixes[o][a] for o, a in enumerate(voting)]
            yield tuple(sum(column, Fraction(0)) for column in zip(*chosen, strict=True)), sum(voting), new


def relations(lo: Fraction, hi: Fraction) -> frozenset[int]:
    """The signs (1 above, 0 tied, -1 below) a difference in ``[lo, hi]`` may take."""
    return frozenset(s for s, ok in ((1, hi > 0), (0, lo <= 0 <= hi), (-1, lo < 0)) if ok)


@lru_cache(maxsize=4096)
def within(tally: Tally, i: int, j: int) -> frozenset[int]:
    """Relations responses ``i`` and ``j`` of one group (which has votes) may end in: their sums over
    the same voters, each new vote moving them at most the scale's spread apart."""
    spread = tally.high - tally.low
    out: set[int] = set()
    for sums, _count, new in tally.outcomes():
        diff = sums[i] - sums[j]
        out |= relations(diff - spread * new, diff + spread * new)
    return frozenset(out)


@lru_cache(maxsize=4096)
def value_range(tally: Tally, i: int, base: int | None) -> tuple[Fraction, Fraction]:
    """The least and most response ``i``'s mean (minus the mean of response ``base`` of the same
    group, which shares its voters) can end at, in a group that has votes."""
    spread = tally.high - tally.low
    lo = hi = None
    for sums, count, new in tally.outcomes():
        voters = count + new
        if base is None:
            low, high = (sums[i] + tally.low * new) / voters, (sums[i] + tally.high * new) / voters
        else:
            diff = sums[i] - sums[base]
            low, high = (diff - spread * new) / voters, (diff + spread * new) / voters
        lo = low if lo is None else min(lo, low)
        hi = high if hi is None else max(hi, high)
    assert lo is not None and hi is not None
    return lo, hi


Option = tuple[Fraction, int]  # one way a set may end for one response: (sum of its votes, their count)


def _options(tally: Tally, i: int, highest: bool) -> tuple[Option, ...]:
    """Per outcome, response ``i``'s extreme (least, or with ``highest`` most) sum and its count, less
    those no ratio can choose (:func:`_hull`)."""
    extreme = tally.high if highest else tally.low
    if tally.k_meta is None or tally.ratings is None:
        # Each new vote adds the same extreme to the sum and one to the count: every outcome lies on
        # one line, whose hull (see _hull) is its two ends.
        sums, count, _ = next(tally.outcomes())  # the first: no new votes
        if not tally.remaining:
            return ((sums[i], count),)
        return (sums[i], count), (sums[i] + extreme * tally.remaining, count + tally.remaining)
    return _hull({(sums[i] + extreme * new, count + new) for sums, count, new in tally.outcomes()}, highest)


def _hull(options: set[Option], highest: bool) -> tuple[Option, ...]:
    """The options that can be a set's choice in :func:`_dinkelbach`, which picks the least
    ``s - r * c`` (with ``highest``, the most), for some ratio ``r``: the vertices of the lower (upper)
    convex hull of the points ``(c, s)``, the rest lying on or above (below) a line between two of them.
    The least over the vertices is the least over all, so the ratio found is the same, from a few
    options where a set may have dozens (a large pool's rule weighs hundreds of sets per response)."""
    sign = -1 if highest else 1
    hull: list[tuple[int, Fraction]] = []
    for c, s in sorted((c, sign * s) for s, c in options):  # lower hull, Andrew's monotone chain
        if hull and hull[-1][0] == c:
            continue  # the same count: the least sum of it came first
        while len(hull) >= 2 and _turn(hull[-2], hull[-1], (c, s)) <= 0:
            hull.pop()
        hull.append((c, s))
    return tuple((sign * s, c) for c, s in hull)


def _turn(a: tuple[int, Fraction], b: tuple[int, Fraction], c: tuple[int, Fraction]) -> Fraction:
    """Positive when ``a``, ``b``, ``c`` turn counter-clockwise (``b`` below the line from ``a`` to ``c``)."""
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


@lru_cache(maxsize=4096)
def pooled_range(placements: tuple[tuple[Tally, int], ...]) -> tuple[Fraction, Fraction]:
    """The least and most a response's pooled mean can end at: the sum of its votes over their count
    in every set it is judged in (``placements``: each set's tally and the response's position there;
    each has votes now, so each keeps at least one voter).

    The pooled mean is ``sum(s_g) / sum(c_g)`` for one outcome ``(s_g, c_g)`` of each set (sums at their
    extreme: every new vote at the scale's low end for the least, high end for the most), and the
    sets' outcomes are independent of each other. So it is a min- (max-) ratio problem over a product
    of small option sets, solved exactly by :func:`_dinkelbach`. With one set it is
    :func:`value_range`'s bound.
    """
    lo = _dinkelbach([_options(t, i, highest=False) for t, i in placements], minimise=True)
    hi = _dinkelbach([_options(t, i, highest=True) for t, i in placements], minimise=False)
    return lo, hi


def _dinkelbach(options: Sequence[Sequence[Option]], *, minimise: bool) -> Fraction:
    """The least (``minimise``) or most ``sum(s) / sum(c)`` over one option ``(s, c)`` per set, every
    ``c >= 1``.

    Dinkelbach's method: for a ratio ``r`` of some choice, ``F(r) = min over choices of
    sum(s - r * c)`` is at most 0, and it is the sum of each set's own least ``s - r * c``, since the
    sets choose independently. ``F(r) = 0`` means no choice has a smaller ratio (``sum(c) > 0``), so
    ``r`` is the minimum; else the minimising choice has a strictly smaller ratio, and ``r`` moves to
    it. The ratios strictly decrease over finitely many choices, so it ends, in exact arithmetic.
    The maximum is the minimum with every sum negated.

    In integers, all the same exact: every sum times the common denominator ``d`` of the sums is an
    integer ``S``, a ratio is ``num / den`` (``num`` such integers summed, ``den`` counts), and
    ``s - r * c`` orders as ``S * den - num * c`` (``den > 0``). Fractions would reduce by a gcd at
    every step, which a large pool's hundreds of sets pay for many times per round.
    """
    sign = 1 if minimise else -1
    d = math.lcm(*(s.denominator for opts in options for s, _ in opts))
    scaled = [[(sign * s.numerator * (d // s.denominator), c) for s, c in opts] for opts in options]
    choice = [opts[0] for opts in scaled]
    num, den = sum(s for s, _ in choice), sum(c for _, c in choice)
    while True:
        choice = [min(opts, key=lambda o: o[0] * den - num * o[1]) for opts in scaled]
        if sum(s * den - num * c for s, c in choice) == 0:
            return sign * Fraction(num, den * d)
        num, den = sum(s for s, _ in choice), sum(c for _, c in choice)
