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


def order_shares(total: int, counts: Sequence[int]) -> tuple[list[int], int]:
    """Each order's whole share of ``total`` voters, in proportion to its samples ``counts`` (rounded
    down), and how many voters are left over (fewer than the orders: :func:`select_top_k_by_order`
    gives them to the best-rated samples left, one per order at most)."""
    whole = sum(counts)
    if whole == 0:
        return [0] * len(counts), 0
    shares = [total * c // whole for c in counts]
    return shares, total - sum(shares)


def select_top_k_by_order(
    parsed: Sequence[bool],
    meta_scores: Sequence[float | None],
    orders: Sequence[int],
    shares: Sequence[int],
    leftover: int = 0,
) -> list[int]:
    """:func:`select_top_k` within each order: of the samples that showed the responses in order ``o``
    (``orders[i]``), the ``shares[o]`` best-rated parsed ones vote (fewer if fewer parsed), so a pairwise
    judge's kept votes stay balanced over its orders and its position bias still cancels; then the
    ``leftover`` best-rated parsed samples not chosen, at most one per order (the meta RM, not the
    order drawn first, decides which order gets the odd voter). Ties keep the earlier sample. The
    result is in sample order.

    Raises:
        ValueError: as :func:`select_top_k`, or if ``orders`` has another length.
    """
    if len(orders) != len(parsed):
        raise ValueError(f"{len(parsed)} samples but {len(orders)} orders")
    chosen: set[int] = set()
    for o, share in enumerate(shares):
        mine = [i for i, order in enumerate(orders) if order == o]
        if share > 0 and mine:
            picked = select_top_k([parsed[i] for i in mine], [meta_scores[i] for i in mine], share)
            chosen.update(mine[j] for j in picked)
    rest = sorted(
        (i for i in range(len(parsed)) if parsed[i] and i not in chosen), key=lambda i: (-_rated(meta_scores, i), i)
    )
    extra: dict[int, int] = {}  # order -> its odd voter
    for i in rest:
        if len(extra) < leftover and orders[i] not in extra:
            extra[orders[i]] = i
    return sorted(chosen | set(extra.values()))


def _rated(meta_scores: Sequence[float | None], i: int) -> float:
    score = meta_scores[i]
    if score is None:
        raise ValueError(f"parsed sample {i} has no meta score")
    return score
