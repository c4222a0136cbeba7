"""Adaptive k's ``confident`` rule: stop once full k would very likely order the responses as now (pure).

``rank`` waits until no outcome at all of the samples still to come could change the order: the
worst case, every new vote at the far end of the scale. ``confident`` asks what is *likely*: for every
pair of documents whose relation matters (the pairs ``rank`` checks: every pair, or a rerank's
``top_n`` against the rest and among themselves), it estimates the probability ``P(flip)`` that the
full k would order the two differently from now, and stops once every such probability is at most
``delta``. A pair that ``rank`` has proven decided is settled too, and ``delta = 0`` decides exactly
as ``rank`` does: the model is not consulted then (its probability rounds to 0.0 in floating point
on a wide enough lead, and 0 must mean proven).

**The quantity.** The same one ``rank`` orders by (:mod:`server.pipeline.rank_rule`): a document's
pooled mean over every group judging it, minus, with a rerank's anchor, the anchor's mean in its
item. The difference ``D`` of two such values is linear in the kept votes: each group's kept
samples contribute ``y = sum_j w_j * vote_j`` with weights ``w`` fixed by the pair (``+1/N`` on one
response, ``-1/N`` on the other, where ``N`` is the votes the value will count at full k).

**The model.** Within a group the samples still to come are independent draws like the ones so far
(the rounds keep the orders balanced, so position bias does not move the mean). For a group with
``n`` kept votes now and ``N`` at full k (``r = N - n`` to come; every remaining sample assumed to
parse, which only widens the spread; with a meta RM, ``N = k_meta``), the sum of the ``r`` new
``y`` is, with a flat prior on their mean, normal with mean ``r * ybar`` and variance
``s^2 * r * N / n`` (the spread of ``r`` new draws, ``r s^2``, plus that of the estimated mean
carried over them, ``r^2 s^2 / n``). Summed over the groups, the final ``D`` is normal; ``P(flip)``
is its probability of ending at or past zero on the other side of the current sign. A tie now is never
settled by the model (a continuous final difference is almost never exactly zero): only ``rank``
settles it.

**The floor.** ``s^2`` is the groups' observed variance of ``y`` pooled with a prior of
:data:`PRIOR_VOTES` pseudo-votes at :data:`PRIOR_SD_SHARE` of the scale's spread per vote (2.25 on
1..10). Without it two identical votes would mean zero variance and a certain order after two
samples; a judge's votes are rounded, coarse and correlated within a few samples, so that is never
evidence enough. With it (k=16, 1..10), four identical 9-vs-2 votes give P(flip) 1.5e-24, but four
identical 6-vs-5 votes 0.073 and two 0.25 (docs/adaptive.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from server.pipeline.rank_rule import rank_undecided
from server.pipeline.tallies import Tally

__all__ = ["PRIOR_SD_SHARE", "PRIOR_VOTES", "confident_undecided", "flip_probability"]

PRIOR_SD_SHARE = 0.25  # prior sd of one vote, as a share of the scale's spread (a quarter: 2.25 on 1..10)
PRIOR_VOTES = 1.0  # how many votes' worth of evidence the prior spread carries

Term = tuple[tuple[int, int], ...]  # a pooled mean over these (group, position) placements


def flip_probability(mean: float, variance: float, now: int) -> float:
    """The probability that a normal final difference (``mean``, ``variance``) does not keep the sign
    ``now`` (1, 0 for a tie, -1): ends at or past zero on the other side, or anywhere but exactly
    zero after a tie."""
    if now == 0:
        return 1.0 if variance > 0 or mean != 0 else 0.0
    if variance <= 0:
        return 0.0 if mean * now > 0 else 1.0
    return 0.5 * math.erfc(now * mean / math.sqrt(2.0 * variance))


def confident_undecided(
    tallies: Sequence[Tally],
    documents: Sequence[Sequence[int]],
    n_documents: int,
    delta: float,
    k_min: int,
    *,
    anchored: bool = False,
    top_n: int | None = None,
    items: Sequence[int] | None = None,
) -> set[int]:
    """The groups that must draw more: those with fewer than ``k_min`` samples drawn, and those a pair
    of documents whose relation matters depends on, unless ``rank`` has decided that pair or its
    :func:`flip_probability` is at most ``delta`` (``delta = 0``: only ``rank`` settles a pair).

    Arguments as :func:`~server.pipeline.rank_rule.rank_undecided`'s.
    """
    must_draw = {g for g, t in enumerate(tallies) if t.drawn < min(k_min, t.k) and t.remaining > 0}
    settled: set[tuple[int, int]] = set()
    if delta > 0:
        model = _Model(tallies, documents, anchored, items)
        settled = {
            (a, b)
            for a in range(n_documents)
            for b in range(a + 1, n_documents)
            if (p := model.flip(a, b)) is not None and p <= delta
        }
    undecided = rank_undecided(
        tallies, documents, n_documents, anchored=anchored, top_n=top_n, items=items, settled=frozenset(settled)
    )
    return must_draw | undecided


class _Model:
    """Each pair's difference as a linear form over the groups' kept votes, and its predictive law."""

    def __init__(
        self, tallies: Sequence[Tally], documents: Sequence[Sequence[int]], anchored: bool, items: Sequence[int] | None
    ) -> None:
        self.tallies = tallies
        self.item_of = list(items) if items is not None else list(range(len(tallies)))
        self.where: dict[int, list[tuple[int, int]]] = {}
        for g, docs in enumerate(documents):
            for local, doc in enumerate(docs):
                self.where.setdefault(doc, []).append((g, local))
        self.anchor = 0 if anchored else None
        self.kept = [[t.votes[i] for i in t.kept()] for t in tallies]
        # Votes a group counts at full k: k_meta with a meta RM, else every remaining sample parsing.
        self.final = [
            len(kept) if t.remaining == 0 else (t.k_meta if t.k_meta is not None else len(kept) + t.remaining)
            for t, kept in zip(tallies, self.kept, strict=True)
        ]

    def term(self, doc: int, item: int | None = None) -> Term:
        return tuple((g, j) for g, j in self.where.get(doc, ()) if item is None or self.item_of[g] == item)

    def home(self, doc: int) -> int | None:
        return self.item_of[self.where[doc][0][0]] if doc in self.where else None

    def difference(self, a: int, b: int) -> list[tuple[int, Term]]:
        """``value(a) - value(b)`` as signed pooled means, the quantity ``rank`` orders by."""
        anchor = self.anchor
        if anchor is None or (anchor not in (a, b) and self.home(a) == self.home(b)):
            return [(1, self.term(a)), (-1, self.term(b))]
        if a == anchor:
            return [(1, self.term(anchor, self.home(b))), (-1, self.term(b))]
        if b == anchor:
            return [(1, self.term(a)), (-1, self.term(anchor, self.home(a)))]
        return [(1, self.term(a)), (-1, self.term(anchor, self.home(a))), (-1, self.term(b)),
                (1, self.term(anchor, self.home(b)))]  # fmt: skip

    def flip(self, a: int, b: int) -> float | None:
        """``P(flip)`` of documents ``a`` and ``b`` (None: a value has no votes now; left to ``rank``)."""
        terms = self.difference(a, b)
        now = Fraction(0)
        weights: dict[int, dict[int, float]] = {}  # group -> position -> weight at full k
        for sign, term in terms:
            count = sum(len(self.kept[g]) for g, _ in term)
            if not count:
                return None
            now += sign * sum((Fraction(v[j]) for g, j in term for v in self.kept[g]), Fraction(0)) / count
            final = sum(self.final[g] for g, _ in term)
            for g, j in term:
                weights.setdefault(g, {}).setdefault(j, 0.0)
                weights[g][j] += sign / final
        mean = variance = 0.0
        for g, w in weights.items():
            kept, tally = self.kept[g], self.tallies[g]
            n, final = len(kept), self.final[g]
            if not n:
                if tally.remaining > 0:
                    return None  # a group that may still vote but has no votes to model it by
                continue  # closed without votes: it adds nothing, now or ever
            ys = [sum(wj * vote[j] for j, wj in w.items()) for vote in kept]
            ybar = sum(ys) / n
            mean += final * ybar
            if final > n:
                spread = (tally.scale[1] - tally.scale[0]) * PRIOR_SD_SHARE
                prior = PRIOR_VOTES * spread**2 * sum(wj * wj for wj in w.values())
                s2 = (sum((y - ybar) ** 2 for y in ys) + prior) / (n - 1 + PRIOR_VOTES)
                variance += s2 * (final - n) * final / n
        return flip_probability(mean, variance, (now > 0) - (now < 0))
