"""Prometheus 2 (Kim et al. 2024, arXiv 2405.01535): a rubric judge, one profile per grading mode.

* ``prometheus-2-absolute`` (pointwise ``single``): one response per prompt, an integer 1-5;
* ``prometheus-2-relative`` (``pairwise``): Response A and Response B, the better one (A first shown:
  A wins is the verdict (1, 0), B wins (0, 1)); no tie.

Weights: prometheus-eval/prometheus-7b-v2.0 (Mistral-7B-Instruct-v0.2 base) and -8x7b-v2.0 (Mixtral).

Prompt: the ``prometheus-eval`` package 0.1.20 (PyPI; GitHub commit 1a88c06f), as its
``PrometheusEval.absolute_grade`` / ``relative_grade`` build it for a vLLM model: the template
(``get_prompt_template``: with a reference, ``ABSOLUTE_PROMPT`` / ``RELATIVE_PROMPT``, else the ``_WO_REF``
ones) filled by ``str.format``, then the system prompt and that text wrapped by fastchat's ``mistral``
conversation (PyPI ``fastchat`` 0.1.0, ``SeparatorStyle.LLAMA2``) as ``[INST] {system}\\n{user} [/INST]``
and stripped (``VLLM.completions``). The engine gets that text raw; the tokenizer adds ``<s>`` as
vLLM's ``LLM.generate`` does. Texts: :mod:`server.pipeline.judges.prometheus_prompts`.

The slots (docs/judges.md, "Prometheus 2"):

* ``{instruction}``: a single turn's text as is; a longer conversation as a ``User: ...\\n\\nAssistant:
  ...`` transcript (upstream has no multi-turn path; this is DeepSeek-GRM's context shape);
* ``{rubric}``: no principles: upstream's built-in helpfulness rubric (``load_rubric("helpfulness",
  mode)``: the whole 5-level rubric for absolute, its criteria line for relative); one text: the
  rubric itself, verbatim; six entries: the criteria and the descriptions of scores 1-5, filled into
  ``SCORE_RUBRIC_TEMPLATE`` (relative: its criteria line, as ``load_rubric`` cuts a built-in rubric);
  any other count is refused (:meth:`PrometheusAbsolute.principles_problem`, a 400);
* ``{reference_answer}``: the reference (the with-reference template), else the ``_WO_REF`` one.

Caller text is shown as is except the templates' own section headers (``###Response B:`` ...) and
``[INST]`` / ``[/INST]``, which are defanged so no text can open a fake section or close the turn.

Output and parsing (``prometheus_eval/parser.py`` 0.1.20, narrowed): the verdict is ``[RESULT] n``
(1-5; ``(n)``, ``n/5``, ``n out of 5`` too) at the very end of the output, or ``[RESULT] A`` / ``B``
at the end of a line (upstream's relative regex is multi-line). Unlike upstream, the aliases
``[SCORE]``, ``Score:``, ``Result:``, ``score of`` and ``[Response A]`` are not read (prose such as
"deserves a score of 4" is no verdict), and an output whose ``[RESULT]`` verdicts disagree is
refused; either raises :class:`ParseError`, never a retry or a default. Format guidance is single
pass: one feedback line of bounded length, then `` [RESULT] `` and the verdict.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from server.pipeline.domain import Message
from server.pipeline.judges import prometheus_prompts as up
from server.pipeline.judges.base import (
    Guidance,
    JudgePrompt,
    Mode,
    ParseError,
    Sampling,
    Scale,
    Slot,
    Verdict,
    integer_values,
)

RELEASE = "prometheus-eval-0.1.20"
ABSOLUTE_SCALE = Scale(1, 5)
RELATIVE_SCALE = Scale(0, 1)  # the A/B verdict: winner 1, loser 0
# utils.py 0.1.20 batch_completions_with_retries' defaults (best_of 1 is vLLM's own default).
SAMPLING = Sampling(temperature=1.0, top_p=0.9, max_tokens=1024, repetition_penalty=1.03)
RUBRIC_ENTRIES = 6  # SCORE_RUBRIC_TEMPLATE's slots: the criteria, then scores 1..5
# The characters guidance reserves for what follows the feedback line: " [RESULT] 5" and slack.
_TAIL_RESERVE = 32

_SECTIONS = (
    "Task Description|The instruction to evaluate|Response to evaluate|Reference Answer \\(Score 5\\)"
    "|Reference Answer|Score Rubrics|Score Rubric|Instruction|Response A|Response B|Feedback"
)
_HEADER = re.compile(f"###(?=(?:{_SECTIONS}):)")
_INST = re.compile(r"\[(/?)INST\]")

_ABSOLUTE_SHOWN = re.compile(
    r"\n###Response to evaluate:\n(.*?)\n\n###(?:Reference Answer \(Score 5\)|Score Rubrics):\n", re.S
)
_RELATIVE_SHOWN = re.compile(
    r"\n###Response A:\n(.*?)\n\n###Response B:\n(.*?)\n\n###(?:Reference Answer|Score Rubric):\n", re.S
)

# parser.py's patterns, [RESULT] alone: a score at the end of the output; A or B at a line's end.
_SCORE = re.compile(r"\[RESULT\]\s*[(\[\s]*(\d+)(?:[)\]]|/\s*5|\s*out\s*of\s*5)?\s*\Z", re.I)
_ANY_SCORE = re.compile(r"\[RESULT\]\s*[(\[\s]*(\d+)", re.I)
_CHOICE = re.compile(r"\[RESULT\]\s*(A|B)\]?\s*$", re.I | re.M)
_ANY_CHOICE = re.compile(r"\[RESULT\]\s*(A|B)\b", re.I)
_LABEL = re.compile(r"\AFeedback\s*:\s*", re.I)


def neutralize(text: str) -> str:
    """Defang the templates' section headers (``###Response B:`` -> ``# # #Response B:``) and the
    Mistral turn markers (``[/INST]`` -> ``(/INST)``) in caller text; all else is kept, markdown
    headings (``### Title``) included."""
    return _INST.sub(r"(\1INST)", _HEADER.sub("# # #", text))


def instruction(messages: Sequence[Message]) -> str:
    """Prometheus' ``{instruction}``: one turn's text as is, a longer conversation as a transcript
    (``User: ...\\n\\nAssistant: ...``, the last user turn being the instruction to answer)."""
    if len(messages) == 1:
        return neutralize(messages[0].content)
    return "\n\n".join(f"{m.role.capitalize()}: {neutralize(m.content)}" for m in messages)


def principles_problem(name: str, principles: Sequence[str]) -> str | None:
    """Why ``principles`` cannot fill Prometheus' ``{rubric}`` (None: they can)."""
    if len(principles) in (1, RUBRIC_ENTRIES):
        return None
    return (
        f"judge {name!r} takes principles as one text (the whole rubric, used verbatim) or {RUBRIC_ENTRIES} "
        f"entries (the criteria, then the descriptions of scores 1 to 5); got {len(principles)} entries"
    )


def rubric(principles: Sequence[str] | None, relative: bool) -> str:
    """The ``{rubric}`` text (see the module docstring).

    Raises:
        ValueError: for a number of principles that is neither 1 nor 6.
    """
    if principles is None:
        return up.HELPFULNESS_RUBRIC.split("\n")[0] if relative else up.HELPFULNESS_RUBRIC
    entries = [neutralize(p.strip()) for p in principles]
    if len(entries) == 1:
        return entries[0]
    if len(entries) != RUBRIC_ENTRIES:
        raise ValueError(principles_problem("prometheus-2", principles))
    criteria, *levels = entries
    if relative:
        return f"[{criteria}]"  # SCORE_RUBRIC_TEMPLATE's first line, as load_rubric(..., "relative") cuts
    descriptions = {f"score{i}_description": text for i, text in enumerate(levels, start=1)}
    return up.SCORE_RUBRIC_TEMPLATE.format(criteria=criteria, **descriptions)


def mistral_text(system: str, user: str) -> str:
    """fastchat 0.1.0's ``mistral`` conversation with one system and one user message and the
    assistant's turn open (``get_prompt``, LLAMA2 style), stripped as ``VLLM.completions`` does."""
    return f"[INST] {system}\n{user} [/INST]".strip()


def feedback_chars(max_tokens: int) -> int:
    """Characters the guided feedback line may hold: every token carries at least one character of
    ASCII text (the assumption of :func:`server.pipeline.parsing.guidance_line_chars`), so the line,
    `` [RESULT] `` with its verdict (11 characters) and the end token fit ``max_tokens``."""
    return max(8, max_tokens - _TAIL_RESERVE)


def _feedback(text: str) -> str:
    return _LABEL.sub("", text.strip())


def parse_score(text: str) -> Verdict:
    """An absolute verdict: ``[RESULT] n`` ending the output, n in 1..5.

    Raises:
        ParseError: no such ending, a score outside 1..5, or an earlier ``[RESULT]`` giving another.
    """
    final = _SCORE.search(text)
    if final is None:
        what = "does not end with an integer" if "[result]" in text.lower() else "is missing"
        raise ParseError(f"the verdict '[RESULT] <1-5>' {what}")
    score = int(final.group(1))
    if not 1 <= score <= 5:
        raise ParseError(f"score {score} is outside 1..5")
    others = {int(m.group(1)) for m in _ANY_SCORE.finditer(text, 0, final.start())} - {score}
    if others:
        raise ParseError(f"the [RESULT] verdicts disagree: {sorted(others)} before the final {score}")
    return Verdict((score,), critique=_feedback(text[: final.start()]))


def parse_choice(text: str) -> Verdict:
    """A relative verdict: ``[RESULT] A`` or ``[RESULT] B`` at the end of a line.

    Raises:
        ParseError: no such verdict, or ``[RESULT]`` verdicts naming both A and B.
    """
    found = list(_CHOICE.finditer(text))
    if not found:
        what = "is not followed by A or B alone" if "[result]" in text.lower() else "is missing"
        raise ParseError(f"the verdict '[RESULT] A|B' {what}")
    choices = {m.group(1).upper() for m in _ANY_CHOICE.finditer(text)}
    if len(choices) > 1:
        raise ParseError("the [RESULT] verdicts name both A and B")
    scores = (1, 0) if choices == {"A"} else (0, 1)
    return Verdict(scores, critique=_feedback(text[: found[0].start()]))


def score_slot(text: str) -> Slot:
    """Where :func:`parse_score` reads the score (a slot on 1..5).

    Raises:
        ParseError: as :func:`parse_score`.
    """
    parse_score(text)
    final = _SCORE.search(text)
    assert final is not None  # parse_score found it
    return Slot(final.start(1), final.end(1), integer_values(ABSOLUTE_SCALE))


def choice_slot(text: str) -> Slot:
    """Where :func:`parse_choice` reads the winner (the last ``[RESULT] A|B`` line's label).

    Raises:
        ParseError: as :func:`parse_choice`.
    """
    parse_choice(text)
    last = list(_CHOICE.finditer(text))[-1]
    return Slot(last.start(1), last.end(1), ("A", "B"), "winner")


def _template_name(mode: str, principles: bool, reference: bool) -> str:
    prompt = f"{mode.upper()}_PROMPT{'' if reference else '_WO_REF'}"
    return f"{RELEASE}:{prompt}+{'rubric' if principles else 'helpfulness'}"


def _guidance(verdict: str, max_tokens: int) -> Guidance:
    return Guidance(f"[^\\n]{{1,{feedback_chars(max_tokens)}}} \\[RESULT\\] {verdict}", max_tokens)


@dataclass(frozen=True)
class PrometheusAbsolute:
    """Prometheus 2, absolute grading: one response per prompt, a score 1-5."""

    name: str = "prometheus-2-absolute"
    mode: Mode = "single"
    scale: Scale = ABSOLUTE_SCALE
    takes_reference: bool = True
    takes_principles: bool = True
    sampling: Sampling = SAMPLING
    max_responses: int | None = 1

    def template_name(self, principles: bool, reference: bool) -> str:
        return _template_name("absolute", principles, reference)

    def principles_problem(self, principles: Sequence[str]) -> str | None:
        """Why ``principles`` cannot fill the rubric (None: they can); see :func:`rubric`."""
        return principles_problem(self.name, principles)

    def render(
        self,
        messages: Sequence[Message],
        shown: Sequence[str],
        principles: Sequence[str] | None = None,
        reference: str | None = None,
    ) -> JudgePrompt:
        if len(shown) != 1:
            raise ValueError(f"{self.name} judges one response per prompt, not {len(shown)}")
        template = up.ABSOLUTE_PROMPT if reference is not None else up.ABSOLUTE_PROMPT_WO_REF
        user = template.format(
            instruction=instruction(messages),
            response=neutralize(shown[0]),
            rubric=rubric(principles, relative=False),
            reference_answer=neutralize(reference) if reference is not None else None,
        )
        return JudgePrompt(mistral_text(up.ABS_SYSTEM_PROMPT, user), raw=True)

    def guidance(self, n: int, max_tokens: int) -> Guidance:
        return _guidance("[1-5]", max_tokens)

    def continuation(self, text: str, n: int) -> tuple[str, str] | None:
        return None  # single-pass guidance: a guided sample always ends within its budget

    def parse(self, text: str, n: int) -> Verdict:
        if n != 1:
            raise ValueError(f"{self.name} judges one response per prompt, not {n}")
        return parse_score(text)

    def slots(self, text: str, n: int) -> tuple[Slot, ...]:
        self.parse(text, n)
        return (score_slot(text),)

    def shown_responses(self, prompt: JudgePrompt) -> list[str]:
        found = _ABSOLUTE_SHOWN.search(prompt.user)
        return [found.group(1)] if found else []

    def example_output(self, scores: Sequence[float]) -> str:
        score = min(5, max(1, round(scores[0])))
        return f"Feedback: The response meets the rubric's level {score} descriptions. [RESULT] {score}"


@dataclass(frozen=True)
class PrometheusRelative:
    """Prometheus 2, relative grading: Response A and Response B, the better one."""

    name: str = "prometheus-2-relative"
    mode: Mode = "pairwise"
    scale: Scale = RELATIVE_SCALE
    takes_reference: bool = True
    takes_principles: bool = True
    sampling: Sampling = SAMPLING
    max_responses: int | None = 2

    def template_name(self, principles: bool, reference: bool) -> str:
        return _template_name("relative", principles, reference)

    def principles_problem(self, principles: Sequence[str]) -> str | None:
        """Why ``principles`` cannot fill the rubric (None: they can); see :func:`rubric`."""
        return principles_problem(self.name, principles)

    def render(
        self,
        messages: Sequence[Message],
        shown: Sequence[str],
        principles: Sequence[str] | None = None,
        reference: str | None = None,
    ) -> JudgePrompt:
        if len(shown) != 2:
            raise ValueError(f"{self.name} judges two responses per prompt, not {len(shown)}")
        template = up.RELATIVE_PROMPT if reference is not None else up.RELATIVE_PROMPT_WO_REF
        user = template.format(
            instruction=instruction(messages),
            response_A=neutralize(shown[0]),
            response_B=neutralize(shown[1]),
            rubric=rubric(principles, relative=True),
            reference_answer=neutralize(reference) if reference is not None else None,
        )
        return JudgePrompt(mistral_text(up.REL_SYSTEM_PROMPT, user), raw=True)

    def guidance(self, n: int, max_tokens: int) -> Guidance:
        return _guidance("[AB]", max_tokens)

    def continuation(self, text: str, n: int) -> tuple[str, str] | None:
        return None  # single-pass guidance: a guided sample always ends within its budget

    def parse(self, text: str, n: int) -> Verdict:
        if n != 2:
            raise ValueError(f"{self.name} judges two responses per prompt, not {n}")
        return parse_choice(text)

    def slots(self, text: str, n: int) -> tuple[Slot, ...]:
        self.parse(text, n)
        return (choice_slot(text),)

    def shown_responses(self, prompt: JudgePrompt) -> list[str]:
        found = _RELATIVE_SHOWN.search(prompt.user)
        return [found.group(1), found.group(2)] if found else []

    def example_output(self, scores: Sequence[float]) -> str:
        winner = "A" if scores[0] >= scores[1] else "B"
        return f"Feedback: Response {winner} follows the rubric more closely. [RESULT] {winner}"
