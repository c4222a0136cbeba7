"""Domain dataclasses of the scoring pipeline, kept apart from the HTTP protocol models."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from server.pipeline.adaptive import StopReason, StopRule

# Bytes of the Python objects around a sample's texts and a response's score (the dataclass, its
# tuples, ints and floats), measured with tracemalloc on CPython 3.11 and rounded up
# (tests/unit/test_result_size.py keeps the estimate honest).
_SAMPLE_OVERHEAD = 600
_RESPONSE_OVERHEAD = 300
_ITEM_OVERHEAD = 800
_SOFT_OVERHEAD, _SOFT_PER_VOTE = 64, 40  # a sample's soft scores: their tuple, and per vote its slot and float

# Votes of a sample: the integers it wrote (hard, the paper's), or the expectation of the judge's own
# distribution over the values where it wrote each (soft, :mod:`server.pipeline.soft_votes`).
Votes = Literal["hard", "soft"]
VOTES: tuple[Votes, ...] = ("hard", "soft")
# Whether a soft score was read where the judge sampled it, or where a guided continuation wrote it.
SoftSource = Literal["sampled", "guided"]


@dataclass(frozen=True)
class Message:
    """One conversation turn."""

    role: str  # "user" | "assistant" | "system"
    content: str


class SampleStatus(StrEnum):
    """What became of one generated sample."""

    PARSED = "parsed"
    UNPARSEABLE = "unparseable"
    # Parsed, but a soft vote could not be read (the engine gave no logprobs where it wrote a score, or
    # the score is not one of the scale's values): with soft votes it does not vote.
    NO_SOFT_SCORE = "no_soft_score"


@dataclass(frozen=True)
class ParsedOutput:
    """Principles, critique and scores read from one generated text (scores in shown order)."""

    principles: str
    critique: str
    scores: tuple[int, ...]


@dataclass(frozen=True)
class Sample:
    """One GRM sample for one group of responses, its scores mapped back to the caller's order.

    ``permutation[j]`` is the caller-side index (within the group) of the response shown at
    position ``j``; ``scores[i]`` is the score of the group's i-th response in the caller's order.
    """

    group: int
    permutation: tuple[int, ...]
    text: str
    finish_reason: str | None
    generation_tokens: int
    status: SampleStatus
    principles: str | None = None
    critique: str | None = None
    scores: tuple[float, ...] | None = None  # its votes (a pointwise judge's scores; pairwise: pairing.py)
    meta_score: float | None = None  # the meta RM's rating; None when no meta RM rated it
    kept: bool = False  # whether this sample voted
    continued: bool = False  # the budget cut it before its scores and a guided continuation completed it
    preference: float | None = None  # a pairwise judge's graded preference, where it states one
    soft_scores: tuple[float, ...] | None = None  # soft votes, in the order of ``scores`` (votes: soft)
    soft_source: SoftSource | None = None  # where the soft scores were read (votes: soft)
    soft_passes: int = 0  # extra one-token engine requests its soft scores took

    def ballot(self, votes: Votes) -> tuple[float, ...] | None:
        """What this sample votes with: its soft scores for soft votes, else its scores."""
        return self.soft_scores if votes == "soft" else self.scores


class ResponseStatus(StrEnum):
    """Whether a response received a score."""

    OK = "ok"
    NO_VALID_SAMPLES = "no_valid_samples"
    UNPAIRED = "unpaired"  # a pairwise judge had nothing to compare it with (a pool of one)


@dataclass(frozen=True)
class ResponseScore:
    """The vote of the kept samples on one response."""

    score: float | None
    mean_score: float | None
    votes: int
    valid_samples: int
    status: ResponseStatus
    normalized_score: float | None = None  # mean_score times the votes full k gives: comparable across k used


@dataclass
class ItemResult:
    """Everything the pipeline computed for one item (one query and its responses)."""

    responses: list[ResponseScore]
    samples: list[Sample]
    k: int
    prompt_tokens: int = 0
    generation_tokens: int = 0
    groups: list[list[int]] = field(default_factory=list)
    k_meta: int | None = None  # samples kept per group by the meta RM; None without one
    generate_seconds: float = 0.0
    meta_rm_seconds: float = 0.0
    group_sizes: list[int] = field(default_factory=list)  # per response: responses in its GRM prompt
    k_used: int = 0  # samples its groups drew, at most (k unless adaptive k stopped it early)
    adaptive: StopRule = "off"  # adaptive k's rule: off, rank or stderr
    stop_reason: StopReason = "off"  # off (not adaptive), rank, stderr or confident (the rule stopped it), k (drew all)
    rounds: int = 1  # rounds of engine requests it took (adaptive items draw in rounds)
    votes: Votes = "hard"  # what its samples voted with

    def approx_bytes(self) -> int:
        """Estimated memory this result holds (what a cache of results counts against its bound)."""
        size = _ITEM_OVERHEAD + _RESPONSE_OVERHEAD * len(self.responses)
        for s in self.samples:
            size += _SAMPLE_OVERHEAD + str_bytes(s.text) + str_bytes(s.principles) + str_bytes(s.critique)
            if s.soft_scores is not None:
                size += _SOFT_OVERHEAD + _SOFT_PER_VOTE * len(s.soft_scores)
        return size


def str_bytes(text: str | None) -> int:
    """Memory a string may come to hold: itself, plus the UTF-8 copy CPython caches beside a non-ASCII
    string once something (the JSON encoder of a response) asks for it."""
    if text is None:
        return 16
    extra = 0 if text.isascii() else len(text.encode("utf-8", "surrogatepass")) + 1
    return sys.getsizeof(text) + extra
