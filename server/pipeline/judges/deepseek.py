"""DeepSeek-GRM (Liu et al. 2025, arXiv 2504.02495): pointwise over a group of responses, 1-10 each.

The prompt is the paper's Appendix G template, byte for byte (:mod:`server.pipeline.prompts`), with
the versioned rubric and reference variants; the output is three lines, ``Specific Criteria:``,
``Analysis:`` and ``Scores: \\boxed{s1, ..., sN}`` (:mod:`server.pipeline.parsing`), guided in two
passes. Weights: BBQGOD/DeepSeek-GRM-16B and -27B, with the meta RM BBQGOD/DeepSeek-GRM-27B-MetaRM.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from server.pipeline import parsing
from server.pipeline.domain import Message
from server.pipeline.judges.base import (
    Guidance,
    JudgePrompt,
    Mode,
    ParseError,
    Sampling,
    Scale,
    Slot,
    Verdict,
    integer_spellings,
    integer_values,
)
from server.pipeline.prompts import DEFAULT_TEMPLATE, HINT_TEMPLATE, PRINCIPLES_TEMPLATE, REFERENCE_TEMPLATE, Template

SCALE = Scale(parsing.MIN_SCORE, parsing.MAX_SCORE)
# The paper's Voting@k / MetaRM@k temperature; top_p 1 and a 1024-token budget, the server's defaults.
SAMPLING = Sampling(temperature=0.5, top_p=1.0, max_tokens=1024)
PAPER_TEMPLATE = Template(DEFAULT_TEMPLATE)

_BLOCK = re.compile(r"\[The Begin of Response \d+\]\n(.*?)\n\[The End of Response \d+\]", re.S)


@dataclass(frozen=True)
class DeepSeekGRM:
    """The DeepSeek-GRM profile (the server's default judge)."""

    name: str = "deepseek-grm"
    mode: Mode = "group"
    scale: Scale = SCALE
    takes_reference: bool = True
    takes_principles: bool = True
    sampling: Sampling = SAMPLING
    max_responses: int | None = None
    template: Template = PAPER_TEMPLATE

    def template_name(self, principles: bool, reference: bool) -> str:
        if principles and reference:
            return f"{PRINCIPLES_TEMPLATE}+{REFERENCE_TEMPLATE}"
        if principles:
            return PRINCIPLES_TEMPLATE
        return REFERENCE_TEMPLATE if reference else self.template.name

    def render(
        self,
        messages: Sequence[Message],
        shown: Sequence[str],
        principles: Sequence[str] | None = None,
        reference: str | None = None,
    ) -> JudgePrompt:
        return JudgePrompt(self.template.render(messages, shown, principles, reference))

    def guidance(self, n: int, max_tokens: int) -> Guidance:
        plan = parsing.plan_guidance(n, max_tokens)
        return Guidance(plan.regex, plan.max_tokens, plan.continue_cut)

    def continuation(self, text: str, n: int) -> tuple[str, str] | None:
        return parsing.continuation(text, n)

    def continuation_reserve(self, n: int) -> int:
        return parsing.continuation_reserve(n)

    def parse(self, text: str, n: int) -> Verdict:
        try:
            parsed = parsing.parse_sample(text, n)
        except parsing.ParseError as exc:
            raise ParseError(str(exc)) from None
        return Verdict(parsed.scores, parsed.principles, parsed.critique)

    def slots(self, text: str, n: int) -> tuple[Slot, ...]:
        try:
            spans = parsing.score_spans(text, n)
        except parsing.ParseError as exc:
            raise ParseError(str(exc)) from None
        values, spellings = integer_values(self.scale), integer_spellings(self.scale, parsing.read_score)
        return tuple(Slot(start, end, values, "score", i, spellings) for i, (start, end) in enumerate(spans))

    def shown_responses(self, prompt: JudgePrompt) -> list[str]:
        return _BLOCK.findall(prompt.user)

    def example_output(self, scores: Sequence[float]) -> str:
        boxed = ", ".join(str(round(s)) for s in scores)
        return f"Specific Criteria: Accuracy.\nAnalysis: Compared.\nScores: \\boxed{{{boxed}}}"


@dataclass(frozen=True)
class HintedDeepSeekGRM(DeepSeekGRM):
    """DeepSeek-GRM told which response is preferred: SPCT's hinted sampling (``grm-train rft``).

    One profile per item: ``preferred`` is the preferred response's text, found among the responses in
    whatever order a sample shows them, and named by its position in a hint section after them
    (:data:`~server.pipeline.prompts.HINT_TEMPLATE`). Output format, guidance and parser are DeepSeek-GRM's.
    Never served (a server does not know the answer); without principles or a reference only.
    """

    name: str = "deepseek-grm-hinted"
    preferred: str = ""

    def template_name(self, principles: bool, reference: bool) -> str:
        return HINT_TEMPLATE

    def render(
        self,
        messages: Sequence[Message],
        shown: Sequence[str],
        principles: Sequence[str] | None = None,
        reference: str | None = None,
    ) -> JudgePrompt:
        if principles is not None or reference is not None:
            raise ValueError("hinted sampling takes no principles or reference")
        if self.preferred not in shown:
            raise ValueError("the preferred response is not among the shown responses")
        position = list(shown).index(self.preferred) + 1
        return JudgePrompt(self.template.render(messages, shown, hint=position))
