"""Accuracy from one pool of samples (pure).

Every item was sampled once at the largest k. Voting@k for a smaller k uses the item's first k samples
after interleaving them by response order, so each prefix stays balanced across positions the way a
real k-sample request is (the pipeline sends equal orders together as one ``n=`` request, so its raw
sample list is grouped by order). Ties count half (the expected value of a random tie-break), as the
paper does for voting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from meta_rm.labels import pair_accuracy
from meta_rm.selection import default_k_meta, select_top_k


@dataclass(frozen=True)
class Vote:
    """One sample: the order it saw (request indices), its scores in request order (None if unparsed)."""

    permutation: tuple[int, ...]
    scores: tuple[int, ...] | None
    meta_score: float | None = None


def interleave(samples: Sequence[Vote]) -> list[Vote]:
    """Round-robin over response orders, in order of first appearance."""
    by_order: dict[tuple[int, ...], list[Vote]] = {}
    for s in samples:
        by_order.setdefault(s.permutation, []).append(s)
    queues = list(by_order.values())
    out: list[Vote] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def totals(samples: Sequence[Vote], n: int) -> list[float]:
    """Summed scores per response over the parsed samples (all zero, a full tie, when none parsed)."""
    sums = [0.0] * n
    for s in samples:
        if s.scores is not None:
            for i, x in enumerate(s.scores):
                sums[i] += x
    return sums


def voting_accuracy(samples: Sequence[Vote], n: int, preferred: int, k: int) -> float:
    """Voting@k of one item: sum the first k (interleaved) samples' scores."""
    return pair_accuracy(totals(interleave(samples)[:k], n), preferred)


def meta_rm_accuracy(samples: Sequence[Vote], n: int, preferred: int, k: int) -> float:
    """MetaRM@k of one item: of the first k samples, only the k/2 best-rated parsed ones vote.

    Raises:
        ValueError: if a parsed sample has no meta score.
    """
    pool = interleave(samples)[:k]
    kept = select_top_k([s.scores is not None for s in pool], [s.meta_score for s in pool], default_k_meta(k))
    return pair_accuracy(totals([pool[i] for i in kept], n), preferred)


def verdict(sums: Sequence[float]) -> int | None:
    """The index of the strictly highest total, None on a tie at the top."""
    top = max(sums)
    winners = [i for i, x in enumerate(sums) if x == top]
    return winners[0] if len(winners) == 1 else None


def flips(samples: Sequence[Vote], n: int) -> bool | None:
    """For a pair: does the verdict change when the two responses swap places?

    The verdict is taken separately over the parsed samples that saw (0, 1) and those that saw (1, 0);
    None when the item is not a pair or one order has no parsed sample.
    """
    if n != 2:
        return None
    forward = [s for s in samples if s.permutation == (0, 1) and s.scores is not None]
    backward = [s for s in samples if s.permutation == (1, 0) and s.scores is not None]
    if not forward or not backward:
        return None
    return verdict(totals(forward, 2)) != verdict(totals(backward, 2))
