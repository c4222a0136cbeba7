"""Soft votes' arithmetic (pure): which values a token can spell, and a verdict's votes from its slots'
distributions (:mod:`server.pipeline.soft_votes` reads the distributions from the engine's logprobs).

A slot's *values* are the texts the judge may write there (``"1"`` .. ``"10"``, or ``"A"``, ``"B"``).
Walking a token's text after what the slot already spelled (:func:`classify`):

* it spells a value and then ends it (the token ends with the value and no value extends it, or a
  *terminator* follows the value inside the token: any character but a letter, a digit or a point)
  -> that value;
* it spells a proper prefix of a value (``"1"`` of ``"10"``, which is also a value on 1..10) -> open:
  the distribution at the next position decides (an end there, a terminator, keeps ``"1"``; a ``"0"``
  makes ``"10"``);
* anything else (no value starts so, or a value runs on into more digits or letters, ``"15"``) -> not a
  value: left out, and the rest renormalised.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from server.pipeline.judges import Aggregation, Judge, Slot, Verdict, vote_scale, votes_of
from server.pipeline.judges.base import Scale

SOFT_LOGPROBS = 20  # top logprobs asked of the engine per position: vLLM's default max_logprobs
# An open alternative (a prefix such as "1" of "10") holding less than this share of a position's value
# mass is left out rather than resolved by a scoring pass: it moves the vote by at most this share of the
# scale's spread.
SKIP_SHARE = 1e-4
# Soft votes are rounded to multiples of this: the adaptive rules sum votes exactly (fractions), and a
# float's exact value has a denominator up to 2^52; on this grid sums stay small fractions.
GRID = 2.0**-16

Kind = Literal["value", "open", "none"]


def is_terminator(char: str) -> bool:
    """Whether ``char`` ends a value written before it (anything but a letter, a digit or a point)."""
    return not (char.isalnum() or char == ".")


class Values:
    """A slot's values with the prefix lookups :func:`classify` needs."""

    def __init__(self, values: Sequence[str]) -> None:
        self.values = frozenset(values)
        self.prefixes = frozenset(v[:i] for v in values for i in range(1, len(v) + 1))
        self.extendable = frozenset(v[:i] for v in values for i in range(1, len(v)))  # proper prefixes


def classify(spelled: str, values: Values) -> tuple[Kind, str]:
    """What ``spelled`` (a slot's text so far, a token's text last) is: ``("value", v)`` when it spells
    and ends value ``v``, ``("open", spelled)`` when a value may still follow, else ``("none", "")``."""
    walked = 0
    while walked < len(spelled) and spelled[: walked + 1] in values.prefixes:
        walked += 1
    head = spelled[:walked]
    if walked == len(spelled):
        if head in values.extendable:
            return "open", head
        return ("value", head) if head in values.values else ("none", "")
    if head in values.values and is_terminator(spelled[walked]):
        return "value", head
    return "none", ""


def expectation(distribution: Mapping[str, float]) -> float:
    """The mean of a distribution over number texts."""
    return math.fsum(p * float(v) for v, p in distribution.items())


def on_grid(vote: float, scale: Scale) -> float:
    """A soft vote on the :data:`GRID`, within ``scale`` (rounding never leaves the scale)."""
    return min(scale.high, max(scale.low, round(vote / GRID) * GRID))


def needs_preference(judge: Judge, aggregation: Aggregation) -> bool:
    """Whether the votes read a graded preference (a pairwise judge under win_rate or tiebreaker)."""
    return judge.mode == "pairwise" and aggregation != "mean"


def verdict_votes(
    slots: Sequence[Slot],
    distributions: Sequence[Mapping[str, float]],
    judge: Judge,
    aggregation: Aggregation,
    n: int,
) -> tuple[float, ...]:
    """One soft vote per shown response: the expectation of the hard vote
    (:func:`~server.pipeline.judges.votes_of`) under the slots' distributions (each normalised, taken
    as independent of the others).

    * a winner slot (A/B judges): each response's probability of being named the better;
    * pointwise judges, or ``mean`` aggregation: each score slot's expected value;
    * pairwise judges under ``win_rate`` or ``tiebreaker``: the hard rule's vote averaged over every
      combination of the two scores and the preference, weighted by the product of their probabilities.

    Every vote lies on the vote scale (:func:`~server.pipeline.judges.vote_scale`), on the :data:`GRID`.
    """
    scale = vote_scale(judge, aggregation)
    pairs = list(zip(slots, distributions, strict=True))
    winner = [(s, d) for s, d in pairs if s.field == "winner"]
    if winner:
        slot, dist = winner[0]
        votes: Sequence[float] = [dist.get(label, 0.0) for label in slot.values]
    elif not needs_preference(judge, aggregation):
        votes = [0.0] * n
        for slot, dist in pairs:
            if slot.field == "score":
                votes[slot.index] = expectation(dist)
    else:
        scores = sorted((s.index, d) for s, d in pairs if s.field == "score")
        preference = [d for s, d in pairs if s.field == "preference"]
        fields = [d for _, d in scores] + (preference or [{"": 1.0}])
        sums = [0.0] * n
        for combo in itertools.product(*(list(d.items()) for d in fields)):
            weight = math.prod(p for _, p in combo)
            values = tuple(float(v) for v, _ in combo[:n])
            stated = float(combo[n][0]) if preference else None
            for i, v in enumerate(votes_of(Verdict(values, preference=stated), judge, aggregation)):
                sums[i] += weight * v
        votes = sums
    return tuple(on_grid(v, scale) for v in votes)
