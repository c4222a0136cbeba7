"""Adaptive k: when an item may stop drawing samples (pure).

An adaptive item draws its samples in rounds of whole rotations (every response shown in every
position equally often at each stop point) and, after each round, asks a stopping rule whether the
vote is decided. ``k`` stays the most an item may spend. Rules:

* ``off``: every item draws k samples (the pipeline's plain path, unchanged);
* ``rank``: stop once no outcome of the samples still to come (each voting anything on the vote
  scale, from its low end to its high end, on any response, or not parsing at all; with a meta RM,
  rated anywhere) could change the order of the responses (or, for a rerank with ``top_n``, the
  ``top_n`` best and their order). The reported order is then provably the one the full k samples
  would give, continuing from the same samples (:mod:`server.pipeline.rank_rule`);
* ``stderr``: stop once every response's mean vote, pooled over every set that judges it, has a
  standard error at or below ``epsilon`` (after at least ``k_min`` samples);
* ``confident``: stop once, for every pair whose relation matters (those ``rank`` checks), the
  estimated probability that full k would order them differently from now is at most ``delta``, or
  ``rank`` has proven their relation (:mod:`server.pipeline.confident`; ``delta = 0`` is ``rank``).

No group stops before ``k_min`` samples (rounded up to whole rotations). ``docs/adaptive.md`` says why
these rules and how the defaults were chosen, with the numbers.

With a meta RM, a group that drew ``d`` of its ``k`` samples lets the best ``d * k_meta / k`` of them
vote (the best half by default, as at full k); see :func:`kept_count`.

Vocabulary: a *group* is one judge prompt's response set (a pointwise group, a single response, or a
pair: :func:`server.pipeline.judges.judged_sets`), a :class:`Tally` is what one group drew so far
(with the vote scale), and *documents* number the responses of everything one decision covers (an
item's responses, or a rerank's documents spread over anchored items); a document may be in several
groups (a pairwise judge's pairs), and its votes pool over them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from server.pipeline.rank_rule import rank_undecided
from server.pipeline.tallies import Tally, VoteScale, kept_count

__all__ = [
    "DEFAULT_DELTA",
    "STOP_RULES",
    "AdaptiveOptions",
    "StopReason",
    "StopRule",
    "Tally",
    "VoteScale",
    "earliest_rank_stop",
    "earliest_stderr_stop",
    "first_round",
    "kept_count",
    "next_round",
    "rank_undecided",
    "stderr_undecided",
]

StopRule = Literal["off", "rank", "stderr", "confident"]
STOP_RULES: tuple[StopRule, ...] = ("off", "rank", "stderr", "confident")
# Why an item stopped: "off" (not adaptive, k drawn), the rule that decided early, or "k" (the whole
# budget drawn without the rule deciding earlier).
StopReason = Literal["off", "rank", "stderr", "confident", "k"]
# A scale to count on where the caller names none: where the rules could first stop does not depend
# on the scale (they are invariant under any increasing affine map of the votes), so any is as good.
UNIT_SCALE: VoteScale = (0.0, 1.0)
# confident's default delta, chosen from benchmarks/adaptive.py's simulation (docs/adaptive.md).
DEFAULT_DELTA = 0.02


@dataclass(frozen=True)
class AdaptiveOptions:
    """How an item spends its k samples (resolved from the request and the server's defaults)."""

    rule: StopRule = "off"
    epsilon: float = 0.5  # stderr: the largest standard error of a response's mean vote to stop at
    k_min: int = 4  # no group stops before this many samples (rounded up to whole rotations)
    delta: float = DEFAULT_DELTA  # confident: the largest probability that full k orders a pair otherwise


@lru_cache(maxsize=256)
def earliest_rank_stop(k: int, k_meta: int | None, scale: VoteScale = UNIT_SCALE) -> int:
    """The fewest samples after which ``rank`` could stop a pair judged in one group at all: every
    sample so far voting the scale's high end for one response and its low end for the other. Rounds
    of ``rank`` start there, not earlier. The same on every scale (:data:`UNIT_SCALE`).

    Found by bisection: a lead that is decided stays decided with more samples of the same lead.
    """
    low, high = scale

    def decided(drawn: int) -> bool:
        tally = Tally(k, drawn, ((high, low),) * drawn, 2, scale, (0.0,) * drawn if k_meta else None, k_meta)
        return not rank_undecided([tally], [(0, 1)], 2)

    fewest, most = 1, k  # decided(k) always holds: nothing remains
    while fewest < most:
        middle = (fewest + most) // 2
        if decided(middle):
            most = middle
        else:
            fewest = middle + 1
    return fewest


def earliest_stderr_stop(k: int, k_meta: int | None) -> int:
    """The fewest samples after which ``stderr`` could stop: two votes per response. With a meta RM
    only ``drawn * k_meta // k`` of them vote, so that is ``2k / k_meta`` samples (k when ``k_meta``
    is 1: one vote has no standard error)."""
    if k_meta is None:
        return min(k, 2)
    if k_meta < 2:
        return k
    return min(k, -(-2 * k // k_meta))


# ---- stderr: is every mean precise enough? ----


def stderr_undecided(
    tallies: Sequence[Tally], epsilon: float, k_min: int, documents: Sequence[Sequence[Hashable]] | None = None
) -> set[int]:
    """The groups that must draw more: those with fewer than ``k_min`` samples drawn, and those judging
    a response that has fewer than two votes or whose mean vote has a standard error (sample standard
    deviation / sqrt(votes)) above ``epsilon``.

    A response's votes are its kept votes in every group that judges it: ``documents`` names, per
    group, each of its responses (equal names pool; default: each group's responses are its own).
    """
    names = documents if documents is not None else [[(g, j) for j in range(t.size)] for g, t in enumerate(tallies)]
    votes: dict[Hashable, list[float]] = {}
    judged_in: dict[Hashable, set[int]] = {}
    for g, (t, members) in enumerate(zip(tallies, names, strict=True)):
        kept = t.kept()
        for j, name in enumerate(members):
            votes.setdefault(name, []).extend(t.votes[i][j] for i in kept)
            judged_in.setdefault(name, set()).add(g)
    must_draw = {g for g, t in enumerate(tallies) if t.drawn < min(k_min, t.k)}
    for name, column in votes.items():
        if len(column) < 2 or statistics.stdev(column) / math.sqrt(len(column)) > epsilon:
            must_draw |= judged_in[name]
    return {g for g in must_draw if tallies[g].remaining > 0}


# ---- rounds ----


def first_round(options: AdaptiveOptions, size: int, k: int, k_meta: int | None, scale: VoteScale = UNIT_SCALE) -> int:
    """Samples a group of ``size`` responses draws in its first round: ``k_min``, and no fewer than the
    rule could stop at (:func:`earliest_rank_stop` for ``rank`` on two or more responses,
    :func:`earliest_stderr_stop` for ``stderr``; ``confident`` may stop at ``k_min``), in whole
    rotations, at most ``k``. ``scale`` is the vote scale (the point is the same on any)."""
    target = options.k_min
    if options.rule == "rank" and size >= 2:
        target = max(target, earliest_rank_stop(k, k_meta, scale))
    if options.rule == "stderr":
        target = max(target, earliest_stderr_stop(k, k_meta))
    return min(k, _whole_rotations(target, size))


def next_round(drawn: int, size: int, k: int) -> int:
    """Samples a group has drawn after its next round: half of what is left to k, at least one
    rotation and two samples, in whole rotations, at most ``k``. So an item the rule never decides
    takes about log2 of its budget in rounds (k=16: 4 from 4 samples; k=32: 5), not one per rotation,
    and still gets stop points near k, where ``rank`` decides; at k=8 a pair's rounds are 4, 6, 8."""
    step = max(2, size, -(-(k - drawn) // 2))
    return min(k, _whole_rotations(drawn + step, size))


def _whole_rotations(samples: int, size: int) -> int:
    return -(-samples // size) * size
