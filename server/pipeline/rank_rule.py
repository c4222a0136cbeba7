"""Adaptive k's ``rank`` rule: is the order of the documents decided? (pure, exact)

A *document* is one response of the decision (an item's responses, or a rerank's documents over its
items). It is judged in one or more groups (:class:`~server.pipeline.tallies.Tally`): one group for a
pointwise judge, each of its pairs for a pairwise one (circular: 2, all pairs: m - 1). Its *value*
is what the pipeline orders it by: its pooled mean, the sum of its kept votes in every group it is in
over their count (:func:`server.pipeline.sampling.vote_groups`); with a rerank's anchor, that mean in
its item minus the anchor's in the same item (:mod:`server.serving.reranking`).

Two documents' relation (above, tied, below; no votes below every vote) is *decided* when every way
the full k could end (:meth:`~server.pipeline.tallies.Tally.outcomes`, each new vote anywhere on the
scale) gives the relation reported now. The rule stops when every relation that matters is decided,
so the reported order is the full k's on the same samples. Bounds, tightest first:

* both documents in one group only (a pointwise group, or a lone pair): their vote difference, which
  one sample moves by at most the scale's spread (:func:`~server.pipeline.tallies.within`);
* a value in one group only, or a document minus the anchor of its group: the exact range of that
  mean (:func:`~server.pipeline.tallies.value_range`);
* pooled values: the exact range of the pooled mean with each group's outcome chosen independently
  (:func:`~server.pipeline.tallies.pooled_range`), and a difference of two values as the difference of
  their ranges. Documents that share a group are coupled (the same samples vote on both), and a
  sample's vote on one constrains its vote on the other in no way the rule assumes, so treating them
  independently over-approximates what can happen: the rule may draw more than needed, never stop
  with an order the full k would not give.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from fractions import Fraction

from server.pipeline.tallies import Tally, pooled_range, relations, value_range, within

Placement = tuple[int, int]  # a document in one group: (group, its position there)
Term = tuple[Placement, ...]  # a pooled mean over these placements
_ANY: frozenset[int] = frozenset({-1, 0, 1})


def rank_undecided(
    tallies: Sequence[Tally],
    documents: Sequence[Sequence[int]],
    n_documents: int,
    *,
    anchored: bool = False,
    top_n: int | None = None,
    items: Sequence[int] | None = None,
    settled: Collection[tuple[int, int]] = frozenset(),
) -> set[int]:
    """The groups that must draw more before the order is decided (empty: it is).

    Args:
        tallies: per group, what it drew.
        documents: per group, the document number of each of its responses (a document may be in
            several groups: it is then ordered by its pooled mean).
        n_documents: documents in all.
        anchored: document 0 is in every item and calibrates them (:mod:`server.serving.reranking`):
            a document is ordered by its mean in its item minus the anchor's mean in that item
            (where the anchor has none there, minus the anchor's mean over the items, as the reranker
            shifts it).
        top_n: only the ``top_n`` best must be decided, in their order (None: the whole order).
        items: per group, the item it belongs to (a rerank's group of documents, judged in one or
            more groups); default: each group its own item. Only the anchor is in several items.
        settled: pairs of documents ``(a, b)``, ``a < b``, the caller counts as decided whatever
            their bounds say (the ``confident`` rule's likely pairs, :mod:`server.pipeline.confident`).

    With ``top_n``, the relations among the reported top ``top_n`` and between them and the rest must
    be decided, not those among the rest.
    """
    return _Ranking(tallies, documents, anchored, items).undecided(n_documents, top_n, settled)


class _Ranking:
    """The documents' values now and the bounds on where they can end (see the module docstring)."""

    def __init__(
        self, tallies: Sequence[Tally], documents: Sequence[Sequence[int]], anchored: bool, items: Sequence[int] | None
    ) -> None:
        self.tallies = tallies
        # Each document's term and pooled range, once: every pair of documents asks for both of theirs,
        # and a large pool's document is judged in many sets (all pairs of 64 responses: 63 each).
        self._terms: dict[tuple[int, int | None], Term] = {}
        self._ranges: dict[Term, tuple[Fraction, Fraction]] = {}
        self._voted: dict[Term, Term] = {}
        self.item_of = list(items) if items is not None else list(range(len(tallies)))
        self.where: dict[int, list[Placement]] = {}
        for g, docs in enumerate(documents):
            for local, doc in enumerate(docs):
                self.where.setdefault(doc, []).append((g, local))
        self.open = {g for g, t in enumerate(tallies) if t.remaining > 0}
        self.unvoted = {g for g in self.open if not tallies[g].votes}  # it may yet vote, or never
        self.kept = [t.kept() for t in tallies]
        self.kept_sums = [t.kept_sums for t in tallies]
        self.anchor = 0 if anchored else None
        self.anchor_groups = {g for g, _ in self.where.get(0, ())} if anchored else set()
        # The anchor's mean in each item, and over the items where it has one (what the reranker shifts to).
        self.anchor_in = {i: self.mean(self.term(0, i)) for i in {self.item_of[g] for g in self.anchor_groups}}
        known = [m for m in self.anchor_in.values() if m is not None]
        self.overall = sum(known, Fraction(0)) / len(known) if known else None

    def term(self, doc: int, item: int | None = None) -> Term:
        """Where ``doc`` is judged (in ``item``, when given), leaving out closed groups without votes:
        they add nothing, now or ever."""
        if (doc, item) not in self._terms:
            self._terms[doc, item] = tuple(
                (g, j)
                for g, j in self.where.get(doc, ())
                if (item is None or self.item_of[g] == item) and (self.tallies[g].votes or g in self.open)
            )
        return self._terms[doc, item]

    def home(self, doc: int) -> int | None:
        """The item of a document other than the anchor (None: judged nowhere)."""
        return self.item_of[self.where[doc][0][0]] if doc in self.where else None

    def mean(self, term: Term) -> Fraction | None:
        """The pooled mean of the kept votes over ``term`` now (None: none)."""
        count = sum(len(self.kept[g]) for g, _ in term)
        return sum((self.kept_sums[g][j] for g, j in term), Fraction(0)) / count if count else None

    def value(self, doc: int) -> Fraction | None:
        """What orders ``doc`` now; with anchors, less the overall anchor mean (the same for every document)."""
        if doc == self.anchor:
            return None if self.overall is None else Fraction(0)
        mean = self.mean(self.term(doc))
        if mean is None or self.overall is None:
            return mean
        base = self.anchor_in.get(self.home(doc))  # type: ignore[arg-type]
        return mean - (self.overall if base is None else base)

    def undecided(self, n_documents: int, top_n: int | None, settled: Collection[tuple[int, int]]) -> set[int]:
        values = [self.value(doc) for doc in range(n_documents)]
        order = sorted(range(n_documents), key=lambda d: (values[d] is None, -(values[d] or 0), d))
        if top_n is not None and top_n < n_documents:
            # The top_n come back best first: their order among themselves, and against the rest.
            top = set(order[:top_n])
            pairs = [(a, b) for a in top for b in range(n_documents) if b not in top or a < b]
        else:
            pairs = [(a, b) for a in range(n_documents) for b in range(a + 1, n_documents)]
        must_draw: set[int] = set()
        for a, b in pairs:
            if (min(a, b), max(a, b)) in settled:
                continue
            now = _compare(values[a], values[b])
            involved, possible = self.relation(a, b)
            if self.anchor in (a, b) and values[self.anchor] is None:
                involved |= self.anchor_groups  # the anchor gets a value once any of its groups votes
            if involved & self.unvoted:
                must_draw |= involved & self.open
                continue
            if possible is None:  # a value with no votes now and, its groups being closed, ever
                possible = frozenset({now})
            if possible != {now}:
                must_draw |= involved & self.open
        return must_draw

    def relation(self, a: int, b: int) -> tuple[set[int], frozenset[int] | None]:
        """The groups the relation of ``a`` to ``b`` depends on, and the relations it may end in (None:
        a value that has no votes and will get none, so the relation is what it is now)."""
        anchor = self.anchor
        if anchor is None:
            return self.compare_terms(self.term(a), self.term(b))
        if anchor in (a, b):  # the anchor against a document: their means in the document's item
            other = b if a == anchor else a
            item = self.home(other)
            base, doc = (() if item is None else self.term(anchor, item)), self.term(other)
            if self.mean(base) is None and self.mean(doc) is not None and not _groups(base) & self.unvoted:
                return self.unhinged(a, b)
            return self.compare_terms(base, doc) if a == anchor else self.compare_terms(doc, base)
        item_a, item_b = self.home(a), self.home(b)
        if item_a == item_b or item_a is None or item_b is None:  # the anchor's mean in their item cancels
            return self.compare_terms(self.term(a), self.term(b))
        xa, xb = (self.term(a), self.term(anchor, item_a)), (self.term(b), self.term(anchor, item_b))
        involved = _groups(*xa, *xb)
        if involved & self.unvoted:
            return involved, _ANY
        if any(self.mean(minus) is None and self.mean(plus) is not None for plus, minus in (xa, xb)):
            return self.unhinged(a, b)
        if self.mean(xa[0]) is None or self.mean(xb[0]) is None:
            return involved, None
        lo_a, hi_a = self.difference_range(*xa)
        lo_b, hi_b = self.difference_range(*xb)
        return involved, relations(lo_a - hi_b, hi_a - lo_b)

    def compare_terms(self, x: Term, y: Term) -> tuple[set[int], frozenset[int] | None]:
        """The relation of pooled mean ``x`` to pooled mean ``y``."""
        involved = _groups(x, y)
        if involved & self.unvoted:
            return involved, _ANY
        x, y = self.voted(x), self.voted(y)
        if not x or not y:
            return involved, None
        if len(x) == len(y) == 1 and x[0][0] == y[0][0]:
            return involved, within(self.tallies[x[0][0]], x[0][1], y[0][1])
        lo_x, hi_x = self.pooled_range(x)
        lo_y, hi_y = self.pooled_range(y)
        return involved, relations(lo_x - hi_y, hi_x - lo_y)

    def difference_range(self, plus: Term, minus: Term) -> tuple[Fraction, Fraction]:
        """The range of pooled mean ``plus`` less pooled mean ``minus`` (both with votes)."""
        plus, minus = self.voted(plus), self.voted(minus)
        if len(plus) == len(minus) == 1 and plus[0][0] == minus[0][0]:
            return value_range(self.tallies[plus[0][0]], plus[0][1], minus[0][1])
        lo_p, hi_p = self.pooled_range(plus)
        lo_m, hi_m = self.pooled_range(minus)
        return lo_p - hi_m, hi_p - lo_m

    def unhinged(self, a: int, b: int) -> tuple[set[int], frozenset[int] | None]:
        """A relation involving a document with votes in an item where the anchor has none: the reranker
        shifts it by the anchor's mean over all items, so it depends on every anchor group (rare: every
        sample on the anchor's pairs there unparseable). Undecided while any of them is open; after
        that every shift is final, and each value's range is its pooled mean's less its shift."""
        involved = _groups(self.term(a), self.term(b)) | self.anchor_groups
        if self.anchor_groups & self.open:
            return involved, _ANY
        range_a, range_b = self.shifted_range(a), self.shifted_range(b)
        if range_a is None or range_b is None:
            return involved, None
        return involved, relations(range_a[0] - range_b[1], range_a[1] - range_b[0])

    def shifted_range(self, doc: int) -> tuple[Fraction, Fraction] | None:
        """Where ``doc``'s value can end once the anchor's means are final (None: it has no votes)."""
        if doc == self.anchor:
            return None if self.overall is None else (Fraction(0), Fraction(0))
        term = self.voted(self.term(doc))
        if not term:
            return None
        lo, hi = self.pooled_range(term)
        base = self.anchor_in.get(self.home(doc))  # type: ignore[arg-type]
        shift = base if base is not None else (self.overall or Fraction(0))
        return lo - shift, hi - shift

    def voted(self, term: Term) -> Term:
        if term not in self._voted:
            self._voted[term] = tuple((g, j) for g, j in term if self.tallies[g].votes)
        return self._voted[term]

    def pooled_range(self, term: Term) -> tuple[Fraction, Fraction]:
        """:func:`~server.pipeline.tallies.pooled_range` of a voted term, once per term (hashing its
        many tallies for that function's own cache costs more than the range does)."""
        if term not in self._ranges:
            self._ranges[term] = pooled_range(tuple((self.tallies[g], j) for g, j in term))
        return self._ranges[term]


def _groups(*terms: Term) -> set[int]:
    return {g for term in terms for g, _ in term}


def _compare(x: Fraction | None, y: Fraction | None) -> int:
    if x is None or y is None:
        return (x is not None) - (y is not None)
    return (x > y) - (x < y)
