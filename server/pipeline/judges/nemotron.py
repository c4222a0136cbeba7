"""Nemotron GenRM (NVIDIA): pairwise, a 1-5 score per response and a 1-6 ranking, through custom roles.

Weights: ``nvidia/Qwen3-Nemotron-235B-A22B-GenRM`` (Nemotron 3 Nano's RLHF) and ``-2603`` (Nemotron 3
Super's, the default of NeMo Gym's ``genrm_model.yaml``), profile ``nemotron-genrm``;
``nvidia/Llama-3_3-Nemotron-Super-49B-GenRM``, profile ``nemotron-genrm-49b``.

There is no prompt text: the prompt is a message list that the served model's own chat template
renders (NeMo Gym ``resources_servers/genrm_compare/app.py`` ``_run_single_comparison`` and
``responses_api_models/genrm_model/app.py`` ``GenRMModelMixin._preprocess_chat_completion_create_params``
@ 07d6b0d0; NeMo-RL ``genrm_pairwise_environment.py`` ``_format_genrm_messages`` @ 27bd6a68):
the conversation (its last turn the user's), an optional ``principle`` turn, then ``response_1`` and
``response_2``. The candidates are final answers only: Gym drops a response's reasoning items and
NeMo-RL keeps the text after its last ``</think>``; here a response holding ``</think>`` is cut the
same way (the rest left-stripped, as NeMo-RL does), and an empty answer is shown as ``None``, Gym's
placeholder. A request's principles become the one principle text: a single criterion as given (what
Gym sends), several as numbered lines ``1. ...`` (the criteria list of Gym's GenRM training prompts).

The verdict (:mod:`server.pipeline.judges.nemotron_parsing`): scores ``(score_1, score_2)`` and
``preference = ranking``, whose midpoint 3.5 is what NeMo Gym's ``simple_tiebreaker``
(``--aggregation tiebreaker``) moves tied scores by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.pipeline.domain import Message
from server.pipeline.judges import nemotron_parsing as reading
from server.pipeline.judges.base import Guidance, JudgePrompt, Mode, ParseError, Sampling, Scale, Slot, Verdict

RESPONSE_ROLES = ("response_1", "response_2")
PRINCIPLE_ROLE = "principle"
EMPTY_ANSWER = "None"  # Gym's EMPTY_OUTPUT_PLACEHOLDER, what it shows for a response without a final answer

# genrm_compare.yaml @ 07d6b0d0 (genrm_responses_create_params).
GYM_SAMPLING = Sampling(temperature=0.6, top_p=0.95, max_tokens=16384)
# NeMo-RL grpo_1B.yaml @ 27bd6a68 (genrm_pairwise, the 49B GenRM): temperature 0, top_p unset.
NEMO_RL_SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_tokens=32768)

# Guided output: one line of reasoning, then the verdict. The line is printable ASCII without
# < > { } or a backtick, so it can open no <think>, JSON object or code fence that the parser would
# read instead of the verdict, and every generated token carries at least one of its characters.
REASON_CHARS = "[ -;=?-_a-z|~]"
LINE_CAP = 256  # characters: a short rationale keeps the structured-output automaton small
REASON = "Both responses were compared for helpfulness to the user."


# The 49B GenRM's verdict (NeMo Gym's generative_reward_model test text; NeMo-RL's parser reads it):
# the literal parts and where the two scores and the ranking go.
_BOXED_PARTS = (
    "[The Begin of Individual Scores]\n\\boxed{",
    ", ",
    "}\n[The End of Individual Scores]\n\n[The Begin of Ranking Score]\n\\boxed{",
    "}\n[The End of Ranking Score]",
)
_BOXED_LAYOUT = "{0}{4}{1}{5}{2}{6}{3}"


def final_answer(text: str) -> str:
    """What the judge is shown of a candidate: the text after its last ``</think>`` (left-stripped),
    nothing when it opens ``<think>`` and never closes it, and ``None`` for an empty answer."""
    if reading.THINK_CLOSE in text:
        text = text.rsplit(reading.THINK_CLOSE, 1)[1].lstrip()
    elif text.lstrip().startswith(reading.THINK_OPEN):
        text = ""
    return text if text.strip() else EMPTY_ANSWER


def principle_text(principles: Sequence[str]) -> str:
    """The one ``principle`` turn: a single criterion as given, several as numbered lines."""
    if len(principles) == 1:
        return principles[0]
    return "\n".join(f"{i}. {p.strip()}" for i, p in enumerate(principles, start=1))


def readable(chat: Sequence[tuple[str, str]]) -> str:
    """The chat as text, turn by turn, for logs."""
    return "\n\n".join(f"[{role}]\n{content}" for role, content in chat)


def ranking_for(first: int, second: int) -> int:
    """A ranking that agrees with two scores (a tie leans to the first, ``3``: slightly better)."""
    diff = second - first
    if diff == 0:
        return 3
    return {-1: 2, 1: 5}.get(diff, 1 if diff < 0 else 6)


def _literal(text: str) -> str:
    """``text`` as a regex matching it exactly, in the plain dialect structured-output backends read."""
    for ch in "\\[]{}().*+?|^$":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", "\\n")


@dataclass(frozen=True)
class NemotronGenRM:
    """The Qwen3-Nemotron-235B-A22B GenRM profile (JSON verdict); principles need ``-2603``."""

    name: str = "nemotron-genrm"
    mode: Mode = "pairwise"
    scale: Scale = reading.SCORE
    takes_reference: bool = False
    takes_principles: bool = True
    sampling: Sampling = GYM_SAMPLING
    max_responses: int | None = 2
    preference_midpoint: float = 3.5  # Gym's RANKING_MIDPOINT
    preference_scale: Scale = reading.RANKING

    def template_name(self, principles: bool, reference: bool) -> str:
        return f"{self.name}-principle-v1" if principles else f"{self.name}-v1"

    def render(
        self,
        messages: Sequence[Message],
        shown: Sequence[str],
        principles: Sequence[str] | None = None,
        reference: str | None = None,
    ) -> JudgePrompt:
        """The conversation, the principle turn when principles are given, then the two final answers.

        Raises:
            ValueError: for other than two responses, a reference answer, or principles this
                checkpoint has no role for.
        """
        if len(shown) != 2:
            raise ValueError(f"judge {self.name!r} compares 2 responses per prompt, got {len(shown)}")
        if reference is not None:
            raise ValueError(f"judge {self.name!r} has no slot for a reference answer")
        if principles and not self.takes_principles:
            raise ValueError(f"judge {self.name!r} has no slot for principles (a rubric)")
        chat = [(m.role, m.content) for m in messages]
        if principles:
            chat.append((PRINCIPLE_ROLE, principle_text(principles)))
        chat += [(role, final_answer(text)) for role, text in zip(RESPONSE_ROLES, shown, strict=True)]
        return JudgePrompt(readable(chat), messages=tuple(chat))

    def verdict_regex(self) -> str:
        """The guided verdict (after the reasoning line): the JSON object, keys in Gym's order."""
        return '\\{"score_1": [1-5], "score_2": [1-5], "ranking": [1-6]\\}'

    def verdict_text(self, score_1: int, score_2: int, ranking: int) -> str:
        return f'{{"score_1": {score_1}, "score_2": {score_2}, "ranking": {ranking}}}'

    def line_chars(self, max_tokens: int) -> int:
        """Characters allowed on the reasoning line so that line, a newline, the longest verdict and
        the end token fit ``max_tokens`` (at least one character a token: the output is ASCII)."""
        return min(LINE_CAP, max_tokens - len(self.verdict_text(5, 5, 6)) - 2)

    def guidance(self, n: int, max_tokens: int) -> Guidance | None:
        """One bounded reasoning line, a newline and the verdict; None when ``max_tokens`` cannot
        hold the verdict after a line of at least one character."""
        chars = self.line_chars(max_tokens)
        if chars < 1:
            return None
        return Guidance(f"{REASON_CHARS}{{1,{chars}}}\\n{self.verdict_regex()}", max_tokens)

    def continuation(self, text: str, n: int) -> tuple[str, str] | None:
        return None  # guidance is single-pass and bounded: a guided sample is never cut

    def parse(self, text: str, n: int) -> Verdict:
        if n != 2:
            raise ParseError(f"judge {self.name!r} judges pairs, not {n} responses")
        r = reading.parse(text)
        return Verdict((r.score_1, r.score_2), critique=r.rationale, preference=r.ranking)

    def slots(self, text: str, n: int) -> tuple[Slot, ...]:
        self.parse(text, n)
        return reading.value_slots(text)

    def shown_responses(self, prompt: JudgePrompt) -> list[str]:
        turns = dict(prompt.messages or ())
        return [turns[role] for role in RESPONSE_ROLES if role in turns]

    def example_output(self, scores: Sequence[float]) -> str:
        first, second = (int(min(5, max(1, round(s)))) for s in scores)
        return f"{REASON}\n{self.verdict_text(first, second, ranking_for(first, second))}"


@dataclass(frozen=True)
class NemotronGenRM49B(NemotronGenRM):
    """The Llama-3_3-Nemotron-Super-49B GenRM profile: same roles, boxed verdict sections, NeMo-RL's
    sampling; no principle role is documented for it."""

    name: str = "nemotron-genrm-49b"
    takes_principles: bool = False
    sampling: Sampling = NEMO_RL_SAMPLING

    def verdict_regex(self) -> str:
        return _BOXED_LAYOUT.format(*(_literal(part) for part in _BOXED_PARTS), "[1-5]", "[1-5]", "[1-6]")

    def verdict_text(self, score_1: int, score_2: int, ranking: int) -> str:
        return _BOXED_LAYOUT.format(*_BOXED_PARTS, score_1, score_2, ranking)
