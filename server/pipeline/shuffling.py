"""Response-order permutations that cancel position bias, and group splitting (pure).

The paper shuffles the response order before every sample and maps the scores back. Drawing the
permutations independently leaves chance imbalance at small k (k=8, n=2: a 6/2 split is common),
so grm-serve uses rotations of one random base order: over every n consecutive samples each response
sits in each position exactly once. Identical permutations are then grouped into one engine request
with ``n=count`` so they share the prompt's KV cache.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

Permutation = tuple[int, ...]


def balanced_permutations(n: int, k: int, rng: random.Random) -> list[Permutation]:
    """Return ``k`` permutations of ``range(n)``; position counts differ by at most one.

    ``perm[j]`` is the index of the response shown at position ``j``.

    Raises:
        ValueError: if ``n`` or ``k`` is below 1.
    """
    if n < 1 or k < 1:
        raise ValueError(f"need n >= 1 and k >= 1, got n={n}, k={k}")
    base = list(range(n))
    rng.shuffle(base)
    start = rng.randrange(n)
    perms = []
    for i in range(k):
        r = (start + i) % n
        perms.append(tuple(base[r:] + base[:r]))
    return perms


def group_permutations(perms: Sequence[Permutation]) -> list[tuple[Permutation, int]]:
    """Collapse equal permutations into ``(permutation, count)``, in order of first appearance."""
    counts: dict[Permutation, int] = {}
    for perm in perms:
        counts[perm] = counts.get(perm, 0) + 1
    return list(counts.items())


def apply_permutation(items: Sequence[str], perm: Permutation) -> list[str]:
    """The items in the order a sample shows them."""
    return [items[i] for i in perm]


S = TypeVar("S", int, float)


def unpermute_scores(shown_scores: Sequence[S], perm: Permutation) -> tuple[S, ...]:
    """Map scores given in shown order back to the caller's order.

    Raises:
        ValueError: if the lengths differ.
    """
    if len(shown_scores) != len(perm):
        raise ValueError(f"{len(shown_scores)} scores for {len(perm)} responses")
    out: list[S] = list(shown_scores)
    for position, original in enumerate(perm):
        out[original] = shown_scores[position]
    return tuple(out)


def split_groups(n: int, max_group_size: int) -> list[list[int]]:
    """Split response indices ``0..n-1`` into the fewest groups of at most ``max_group_size``.

    Groups are as even as possible (10 by 4 gives 4, 3, 3, not 4, 4, 2), so no response is judged
    against only one rival when more were available.

    Raises:
        ValueError: if ``n`` or ``max_group_size`` is below 1.
    """
    if n < 1 or max_group_size < 1:
        raise ValueError(f"need n >= 1 and max_group_size >= 1, got {n}, {max_group_size}")
    n_groups = -(-n // max_group_size)
    base, extra = divmod(n, n_groups)
    groups, start = [], 0
    for g in range(n_groups):
        size = base + (1 if g < extra else 0)
        groups.append(list(range(start, start + size)))
        start += size
    return groups
