"""What a judge is: data behind one interface that the pipeline calls (pure).

A generative judge is its prompt rendering (system prompt and chat roles included), the grammar that
guides its output (format guidance), its parser, the scale of its verdicts and its mode:

* ``group``: pointwise over a group of responses in one prompt, one score each (DeepSeek-GRM);
* ``single``: pointwise, one response per prompt (Prometheus 2 absolute);
* ``pairwise``: two responses per prompt, a verdict on the pair (Nemotron GenRM, Prometheus 2
  relative, RM-R1, Skywork-Critic).

The pipeline never branches on a judge's name: it asks the profile to render a prompt for the
responses in the order shown, to guide and parse the output, and turns the verdict into one vote per
response (:meth:`Judge.votes`). Which prompts an item needs (groups, single responses, or pairs, and
both orders of each pair) and how a response's votes are pooled is written once, in
:mod:`server.pipeline.judges.pairing`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from server.pipeline.domain import Message

Mode = Literal["group", "single", "pairwise"]
MODES: tuple[Mode, ...] = ("group", "single", "pairwise")

# How a pairwise verdict becomes one vote per response (pairing.py): the judge's own scores (a
# win indicator for A/B judges), 1/0 by who won, or Nemotron GenRM's tie-breaker.
Aggregation = Literal["mean", "win_rate", "tiebreaker"]
AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "win_rate", "tiebreaker")


class ParseError(ValueError):
    """A sample that cannot be read; the message says why. The sample is dropped, never guessed."""


@dataclass(frozen=True)
class Scale:
    """The range of one vote on one response (the sum of k votes spans ``k * low .. k * high``)."""

    low: float
    high: float

    @property
    def spread(self) -> float:
        """The most one vote can move two responses apart."""
        return self.high - self.low

    def unit(self, mean: float) -> float:
        """A mean vote mapped to [0, 1] (``unit`` rewards, rerank relevance), not clamped."""
        return (mean - self.low) / self.spread


@dataclass(frozen=True)
class JudgePrompt:
    """What one engine request sends (see :class:`server.engines.base.GenerationRequest`).

    ``user`` alone is one user turn; ``system`` adds a system turn; ``messages`` is a whole chat with
    the model's own roles (``user`` then holds its text, for logs); ``raw`` means ``user`` is the
    whole text in the model's own format, sent without a chat template.
    """

    user: str
    system: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    raw: bool = False


@dataclass(frozen=True)
class Verdict:
    """What one sample says, read by the judge's parser.

    ``scores`` are per response in the order shown, on the judge's output scale (an A/B judge's winner
    1, loser 0). ``preference`` is a pairwise judge's graded preference where it states one (Nemotron
    GenRM's ranking, 1 = the first much better .. 6 = the second much better). ``principles`` and
    ``critique`` are the judge's rationale, for audit (empty when it writes none).
    """

    scores: tuple[float, ...]
    principles: str = ""
    critique: str = ""
    preference: float | None = None


SlotField = Literal["score", "preference", "winner"]


@dataclass(frozen=True)
class Slot:
    """Where one sample wrote one element of its verdict, and what it could have written there (what a
    soft vote reads the judge's distribution over, :mod:`server.pipeline.soft_votes`).

    ``start:end`` are the characters of the written value in the sample's text; ``values`` every text
    the judge may write there (its scale's integers, or its labels). ``field`` says what the value is:
    ``score`` (the score of shown response ``index``, ``float(value)``), ``preference`` (a graded
    preference, ``float(value)``), or ``winner`` (``values[i]`` names shown response ``i`` the better).
    """

    start: int
    end: int
    values: tuple[str, ...]
    field: SlotField = "score"
    index: int = 0


def integer_values(scale: Scale) -> tuple[str, ...]:
    """The texts of the integers on ``scale`` (``"1"`` .. ``"10"``), what a score slot may hold."""
    low, high = math.ceil(scale.low), math.floor(scale.high)
    return tuple(str(v) for v in range(low, high + 1))


@dataclass(frozen=True)
class Guidance:
    """How to guide a sample of ``n`` responses within ``max_tokens`` (structured outputs).

    ``continue_cut``: a sample the budget cut before its verdict is completed by a short guided
    continuation of its own text (:meth:`Judge.continuation`); ``max_tokens`` is then the first
    pass's budget (the caller's less the continuation's reserve).
    """

    regex: str
    max_tokens: int
    continue_cut: bool = False


@dataclass(frozen=True)
class Sampling:
    """A judge's default sampling (what its authors publish), used where the server sets none.

    ``repetition_penalty`` (vLLM's: above 1 discourages tokens already in the prompt or the output) is
    the judge's own and not a server setting: every request of this judge carries it.
    """

    temperature: float
    top_p: float
    max_tokens: int
    repetition_penalty: float = 1.0


class Judge(Protocol):
    """A judge profile (see the module docstring). Implementations are frozen dataclasses."""

    @property
    def name(self) -> str:
        """The profile's name (``--judge``), versioned where its prompt is."""

    @property
    def mode(self) -> Mode: ...

    @property
    def scale(self) -> Scale:
        """The scale of the judge's verdict scores."""

    @property
    def takes_reference(self) -> bool:
        """Whether the prompt has a slot for a reference answer."""

    @property
    def takes_principles(self) -> bool:
        """Whether the prompt has a slot for a rubric (``principles``)."""

    @property
    def sampling(self) -> Sampling: ...

    @property
    def max_responses(self) -> int | None:
        """Responses one prompt may show: 2 for pairwise, 1 for single, None for any (group)."""

    def template_name(self, principles: bool, reference: bool) -> str:
        """The versioned name of the prompt this judge renders with these slots filled."""

    def render(
        self,
        messages: Sequence[Message],
        shown: Sequence[str],
        principles: Sequence[str] | None = None,
        reference: str | None = None,
    ) -> JudgePrompt:
        """The prompt that asks the judge about ``shown`` (the responses in the order shown).

        Raises:
            ValueError: for a number of responses the mode does not take.
        """

    def guidance(self, n: int, max_tokens: int) -> Guidance | None:
        """Format guidance for a sample of ``n`` responses, or None when the judge has no grammar."""

    def continuation(self, text: str, n: int) -> tuple[str, str] | None:
        """How to complete a guided sample the budget cut (kept text, regex for the rest), or None."""

    def parse(self, text: str, n: int) -> Verdict:
        """Read one sample about ``n`` shown responses.

        Raises:
            ParseError: when no verdict can be read (the sample is dropped and counted).
        """

    def slots(self, text: str, n: int) -> tuple[Slot, ...]:
        """Where a sample that :meth:`parse` reads wrote each element of its verdict (the scores, the
        preference, or the winner's label), for soft votes; empty when the judge cannot say.

        Raises:
            ParseError: when no verdict can be read (as :meth:`parse`).
        """

    def shown_responses(self, prompt: JudgePrompt) -> list[str]:
        """The responses a prompt of this judge shows, in order (the inverse of :meth:`render`; what a
        fake engine reads to answer as this judge would)."""

    def example_output(self, scores: Sequence[float]) -> str:
        """A well-formed output of this judge giving ``scores`` to the shown responses (for a fake
        engine and the tests; pairwise A/B judges name the higher-scored response)."""


def unsupported(
    judge: Judge,
    *,
    principles: bool,
    reference: bool,
    responses: int | None = None,
    rubric: Sequence[str] | None = None,
) -> str | None:
    """Why ``judge`` cannot judge an item with these slots filled (None: it can): a rubric or reference
    it has no slot for, a pairwise judge given a lone response, or a ``rubric`` (the principles
    themselves) of a shape the judge's rubric slot cannot take. A judge whose slot has a shape says
    why through an optional ``principles_problem(principles) -> str | None`` method (Prometheus 2:
    one text or a 6-entry rubric)."""
    if principles and not judge.takes_principles:
        return f"judge {judge.name!r} has no slot for principles (a rubric)"
    if reference and not judge.takes_reference:
        return f"judge {judge.name!r} has no slot for a reference answer"
    if responses is not None and judge.mode == "pairwise" and responses < 2:
        return f"judge {judge.name!r} is pairwise: an item needs at least 2 responses to compare"
    check = getattr(judge, "principles_problem", None)
    if rubric is not None and check is not None:
        problem: str | None = check(rubric)
        return problem
    return None


def soft_votes_problem(judge: Judge) -> str | None:
    """Why ``judge``'s verdicts have no soft votes (None: they have); a profile says why through an
    optional ``soft_votes_problem() -> str | None`` method (a judge file's scale of non-integers)."""
    check = getattr(judge, "soft_votes_problem", None)
    return None if check is None else check()
