"""The training label of one sample (paper Eq. 10) and the accuracy of a voted result (pure)."""

from __future__ import annotations

from collections.abc import Sequence


def sample_is_correct(scores: Sequence[int] | None, preferred: int) -> bool:
    """A sample is correct only when the preferred response scores strictly above every other one.

    Ties are wrong; an unparseable sample (``None``) is wrong. With a single response the paper's
    criterion needs a reference score; pointwise single-response items are not labelled here.

    Raises:
        ValueError: for fewer than two scores or a ``preferred`` index out of range.
    """
    if scores is None:
        return False
    if len(scores) < 2:
        raise ValueError("labelling needs at least two responses")
    if not 0 <= preferred < len(scores):
        raise ValueError(f"preferred index {preferred} out of range for {len(scores)} responses")
    best = scores[preferred]
    return all(best > s for i, s in enumerate(scores) if i != preferred)


def pair_accuracy(totals: Sequence[float], preferred: int) -> float:
    """1 if the preferred response has the strictly highest total, 1/m on an m-way tie at the top, else 0.

    This counts a tie as the expected value of breaking it at random, as the paper does for voting.
    """
    top = max(totals)
    if totals[preferred] < top:
        return 0.0
    return 1.0 / sum(1 for t in totals if t == top)
