"""Best-of-N reranking over many documents (pure): groups with a shared anchor, calibration, relevance.

The GRM judges at most ``max_group_size`` responses in one prompt, so N documents are split into
groups, each judged with its own k samples. A score of 7 in one group and 7 in another are not the same
7: each group's samples see different rivals, and a judge grades on a curve. Remedy (``anchor``): one
document, the first, is judged in every group. Its mean score in each group measures that group's
curve, and every document's mean is shifted by ``anchor mean over all groups - anchor mean in its own
group`` before ranking. ``docs/reranking.md`` has the measurement behind it and the trade-off (one
more response per prompt, so ``ceil((N-1)/(size-1))`` groups instead of ``ceil(N/size)``).

Order: by the calibrated per-vote mean, unclamped, best first; documents none of whose samples parsed
(no mean) come after every judged one; ties keep the caller's order. The calibrated mean is a vote
mean moved by the anchor shift, so it can leave the votes' range (deepseek-grm's 1..10: a 10 in a
group whose curve was harsh reads 10.5); ranking by it, not by the clamped relevance, keeps such
documents apart.

Relevance is that mean mapped to [0, 1] by the judge's vote scale, ``(mean - low) / (high - low)``
(deepseek-grm: ``(mean - 1) / 9``; an A/B judge's win rate as is), and clamped to [0, 1] (Cohere's
clients expect the unit range): the same scale as ``/get_reward``'s ``unit`` rewards. A document none
of whose samples parsed (or a pairwise judge's unpaired one) gets 0. Clamping never reorders: it is
monotone, and the order is the mean's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.pipeline.domain import ItemResult
from server.pipeline.judges import Scale
from server.pipeline.shuffling import split_groups

ANCHOR = 0  # the document judged in every group
DEEPSEEK_SCALE = Scale(1, 10)  # deepseek-grm's votes, the default judge's


@dataclass(frozen=True)
class RankedDocument:
    index: int
    relevance: float  # mean_score mapped to 0..1 by the vote scale, clamped; 0 when nothing parsed
    mean_score: float | None  # calibrated per-vote mean (the anchor shift can move it past 1..10); None: nothing parsed
    votes: int


def plan_groups(n_documents: int, max_group_size: int, *, anchor: bool, pairwise: bool = False) -> list[list[int]]:
    """Document indices of each GRM group.

    With ``pairwise`` (a judge comparing a group's documents pair by pair) no group is left with one
    document while there are others: a last group of one joins the group before it.

    With ``anchor`` and more documents than fit one group, document :data:`ANCHOR` joins every group
    (first in the caller's order; the pipeline shuffles the shown order per sample anyway).

    With ``max_group_size`` 1 every document is judged alone, in a singleton, and ``anchor`` is
    ignored: a document judged without rivals is not graded on a curve that differs between groups,
    so there is nothing for an anchor to measure or correct (and a group of the anchor plus one
    document would break the size limit).

    Raises:
        ValueError: for no documents or a group size below 1.
    """
    if n_documents <= max_group_size or not anchor or max_group_size < 2:
        groups = split_groups(n_documents, max_group_size)
    else:
        groups = [[ANCHOR, *(i + 1 for i in group)] for group in split_groups(n_documents - 1, max_group_size - 1)]
    if pairwise and len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2].extend(groups.pop())
    return groups


def rank(
    groups: Sequence[Sequence[int]],
    results: Sequence[ItemResult],
    n_documents: int,
    *,
    scale: Scale = DEEPSEEK_SCALE,
) -> list[RankedDocument]:
    """Every document's calibrated score, best first, its relevance on ``scale`` (the judge's votes').

    Sorted by the unclamped calibrated mean, highest first; documents with no mean (no sample parsed
    in any of their groups) last; ties, judged or not, in the caller's order. The mean is compared
    rounded to 9 decimals so that float noise from the anchor shift does not break a true tie.

    Args:
        groups: what :func:`plan_groups` returned.
        results: one pipeline result per group, its responses in the group's order.
        n_documents: the number of documents.
    """
    means: dict[int, list[float]] = {}
    votes: dict[int, int] = {}
    shift = _anchor_shifts(groups, results)
    for g, (members, result) in enumerate(zip(groups, results, strict=True)):
        for doc, score in zip(members, result.responses, strict=True):
            votes[doc] = votes.get(doc, 0) + score.votes
            if score.mean_score is not None:
                means.setdefault(doc, []).append(score.mean_score + shift[g])
    ranked = []
    for doc in range(n_documents):
        values = means.get(doc)
        mean = sum(values) / len(values) if values else None
        relevance = 0.0 if mean is None else min(1.0, max(0.0, scale.unit(mean)))
        ranked.append(RankedDocument(doc, relevance, mean, votes.get(doc, 0)))
    return sorted(ranked, key=_order)


def _order(d: RankedDocument) -> tuple[bool, float, int]:
    """Sort key: judged before unjudged, then the calibrated mean descending, then the caller's index."""
    if d.mean_score is None:
        return (True, 0.0, d.index)
    return (False, -round(d.mean_score, 9), d.index)


def anchored(groups: Sequence[Sequence[int]]) -> bool:
    """Whether the anchor calibrates these groups: there are several, and it is in each."""
    return len(groups) >= 2 and all(ANCHOR in g for g in groups)


def _anchor_shifts(groups: Sequence[Sequence[int]], results: Sequence[ItemResult]) -> list[float]:
    """Per group: what to add to its means so the anchor reads the same everywhere (0 without one)."""
    if not anchored(groups):
        return [0.0] * len(groups)
    anchor_means = [r.responses[list(g).index(ANCHOR)].mean_score for g, r in zip(groups, results, strict=True)]
    known = [m for m in anchor_means if m is not None]
    if not known:
        return [0.0] * len(groups)
    overall = sum(known) / len(known)
    return [0.0 if m is None else overall - m for m in anchor_means]
