"""Guided voting: which samples vote (pure)."""

from __future__ import annotations

from collections.abc import Sequence


def default_k_meta(k: int) -> int:
    """The paper's default: the better half of the samples, at least one."""
    return max(1, k // 2)


def select_top_k(parsed: Sequence[bool], meta_scores: Sequence[float | None], k_meta: int) -> list[int]:
    """Indices of the samples that vote: the ``k_meta`` parsed samples with the highest meta reward.

    Unparseable samples are never kept, even when fewer than ``k_meta`` samples parsed. Ties in the
    meta reward keep the earlier sample, so the choice is deterministic. The result is in sample order.

    Args:
        parsed: per sample, whether it parsed.
        meta_scores: per sample, its meta reward (``None`` for samples that were not rated).
        k_meta: how many samples may vote (>= 1).

    Raises:
        ValueError: if the sequences differ in length, ``k_meta`` < 1, or a parsed sample has no score.
    """
    if len(parsed) != len(meta_scores):
        raise ValueError(f"{len(parsed)} samples but {len(meta_scores)} meta scores")
    if k_meta < 1:
        raise ValueError(f"k_meta must be >= 1, got {k_meta}")
    candidates = []
    for i, (ok, score) in enumerate(zip(parsed, meta_scores, strict=True)):
        if not ok:
            continue
        if score is None:
            raise ValueError(f"parsed sample {i} has no meta score")
        candidates.append((-score, i))
    candidates.sort()
    return sorted(i for _, i in candidates[:k_meta])
