"""95% percentile-bootstrap confidence intervals of Voting@k, per data file and macro over files (pure).

Items are resampled with replacement within each file (a stratified bootstrap: every resample keeps each
file's size), ``resamples`` times from one seeded generator; a file's statistic is the mean of its items'
accuracies, the macro one the mean of the files' means. The interval is the 2.5th and 97.5th percentile
of the resampled statistic. Only item sampling is resampled: the judge's own sampling noise is inside
each item's accuracy, so the interval is what another draw of items from the same files would give.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def _interval(stats: np.ndarray) -> list[list[float]]:
    """Per column of ``stats`` (resamples x statistics): [low, high]."""
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(stats, [tail, 100 - tail], axis=0)
    return [[round(float(a), 4), round(float(b), 4)] for a, b in zip(low, high, strict=True)]


def file_intervals(
    scores: Mapping[str, Sequence[Sequence[float]]], *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[dict[str, list[list[float]]], list[list[float]]]:
    """Intervals of each file's mean and of the macro mean, for each statistic.

    Args:
        scores: per file, per item, its value of each statistic (e.g. Voting@k for each k), items in a
            fixed order (the draw depends on it and on ``seed`` only).
        resamples: bootstrap resamples.
        seed: the generator's seed.

    Returns:
        ``({file: [[low, high] per statistic]}, [[low, high] per statistic] of the macro mean)``.

    Raises:
        ValueError: if a file has no items, or files differ in their number of statistics.
    """
    rng = np.random.default_rng(seed)
    means = []
    by_file: dict[str, list[list[float]]] = {}
    widths = set()
    for name in sorted(scores):
        values = np.asarray(scores[name], dtype=float)
        if values.ndim != 2 or len(values) == 0:
            raise ValueError(f"{name}: no items to resample")
        widths.add(values.shape[1])
        picks = rng.integers(0, len(values), size=(resamples, len(values)))
        resampled = values[picks].mean(axis=1)  # resamples x statistics
        by_file[name] = _interval(resampled)
        means.append(resampled)
    if len(widths) > 1:
        raise ValueError("every file must have the same statistics")
    return by_file, _interval(np.mean(means, axis=0)) if means else []


def paired_difference(
    before: Mapping[str, Sequence[Sequence[float]]],
    after: Mapping[str, Sequence[Sequence[float]]],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, list[list[float]]], list[list[float]]]:
    """Intervals of ``after - before`` on the same items (paired: one resample picks an item for both).

    Raises:
        ValueError: if the two do not hold the same files with the same number of items.
    """
    if sorted(before) != sorted(after) or any(len(before[f]) != len(after[f]) for f in before):
        raise ValueError("a paired comparison needs the same items on both sides")
    diff = {f: (np.asarray(after[f], dtype=float) - np.asarray(before[f], dtype=float)).tolist() for f in before}
    return file_intervals(diff, resamples=resamples, seed=seed)
