"""RM-R1 (Chen et al. 2025, arXiv 2505.02387): pairwise chain-of-rubrics judges, ``[[A]]`` or ``[[B]]``.

Source: github.com/RM-R1-UIUC/RM-R1 @ d4c2542 (``demo/demo.ipynb``, ``eval/RM-Bench/rewardbench/generative.py``,
``eval/RM-Bench/scripts/run_generative.py``, ``rm_r1/dataset/mix_data/mix_data.py``,
``rm_r1/verl/utils/reward_score/lm_as_judge.py``). Two profiles:

* ``rm-r1-instruct`` (gaotang/RM-R1-Qwen2.5-Instruct-7B, -14B, -32B): the chain-of-rubrics system prompt,
  then one user turn;
* ``rm-r1-distilled`` (gaotang/RM-R1-DeepSeek-Distilled-Qwen-7B, -14B, -32B): one user turn, no system
  prompt; the model reasons first and closes its reasoning with ``</think>``.

Prompts (:mod:`server.pipeline.judges.rmr1_prompts`, upstream's strings) are filled as upstream fills them,
with ``str.format``: a single user turn takes the single-turn template; any longer conversation takes the
multi-turn one, each conversation written as the training data writes it (``convert_sky_data_multi``:
``"{role}: {content}"`` lines joined by ``"\\n"``, the user ``User``, the assistant ``Chatbot A`` or
``Chatbot B``, the response the last assistant turn). Upstream has no system role there; grm-serve
writes a system turn as ``System: ...``. Template markers inside caller text are defanged
(:func:`server.pipeline.judges.ab.defang`); text without them is shown unchanged.

Parsing (never a guess): the verdict is read after the last ``</think>`` (a ``<think>`` never closed is
unparseable); a verdict that names both ``[[A]]`` and ``[[B]]`` is an error (upstream's eval
``process_judgement``, "Prevent Hacking"), and the complete tag ``<answer>[[A]]</answer>`` or
``<answer>[[B]]</answer>`` must stand in the last 80 characters (upstream's RL reward ``answer_reward``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from server.pipeline.domain import Message
from server.pipeline.judges import ab
from server.pipeline.judges.base import Guidance, JudgePrompt, Mode, ParseError, Sampling, Scale, Slot, Verdict
from server.pipeline.judges.rmr1_prompts import (
    RM_R1_INSTRUCT_SYSTEM_PROMPT,
    RM_R1_MULTI_TURN_INSTRUCT_USER_PROMPT,
    RM_R1_MULTI_TURN_REASONING_USER_PROMPT,
    RM_R1_SINGLE_TURN_INSTRUCT_USER_PROMPT,
    RM_R1_SINGLE_TURN_REASONING_USER_PROMPT,
)

UPSTREAM_COMMIT = "d4c2542"
# Upstream's evaluation sampling (run_generative.py: temperature 0, top_p 1, --max_tokens 2048). Greedy:
# the k samples of one order are identical (the vLLM engine asks for one and repeats it); pass a
# temperature above 0 (upstream's RL rollouts used 1.0, top_p 1) for inference-time scaling.
SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_tokens=2048)
TAIL_CHARS = 80  # the RL reward reads the verdict tag in the completion's last 80 characters
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER = "<answer>[[{}]]</answer>"

MARKERS = (
    "[Client Question]",
    "[The Start of Chatbot",
    "[The End of Chatbot",
    "[The Start of the Conversation between Chatbot",
    "[The End of the Conversation between Chatbot",
)
_ROLE_NAMES = {"user": "User", "system": "System"}
_SINGLE = re.compile(
    r"\[The Start of Chatbot A's Response\]\n(.*?)\n\[The End of Chatbot A's Response\]\n\n"
    r"\[The Start of Chatbot B's Response\]\n(.*?)\n\[The End of Chatbot B's Response\]",
    re.S,
)
_MULTI = re.compile(
    r"\[The Start of the Conversation between Chatbot A and the Client\]\n(.*?)\n"
    r"\[The End of the Conversation between Chatbot A and the Client\]\n\n"
    r"\[The Start of the Conversation between Chatbot B and the Client\]\n(.*?)\n"
    r"\[The End of the Conversation between Chatbot B and the Client\]",
    re.S,
)
_VERDICT = ab.literal("<answer>[[") + "(A|B)" + ab.literal("]]</answer>")
_THINK_TAIL = f"\n{THINK_CLOSE}\n\n"


def _defang(text: str) -> str:
    return ab.defang(text, MARKERS)


def conversation(messages: Sequence[Message], response: str, chatbot: str) -> str:
    """A conversation and its final response as upstream's multi-turn templates show it."""
    turns = [*((m.role, m.content) for m in messages), ("assistant", response)]
    return "\n".join(
        f"{chatbot if role == 'assistant' else _ROLE_NAMES.get(role, role.capitalize())}: {_defang(content)}"
        for role, content in turns
    )


def _section(text: str, tag: str) -> str:
    """The last ``<tag>...</tag>`` section's text, stripped ('' when there is none)."""
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    return found[-1].strip() if found else ""


@dataclass(frozen=True)
class RMR1:
    """An RM-R1 profile; :class:`RMR1Instruct` and :class:`RMR1Distilled` are the two published ones."""

    name: str = "rm-r1-instruct"
    mode: Mode = "pairwise"
    scale: Scale = ab.SCALE
    takes_reference: bool = False
    takes_principles: bool = False
    sampling: Sampling = SAMPLING
    max_responses: int | None = 2
    system: str | None = RM_R1_INSTRUCT_SYSTEM_PROMPT
    single_template: str = RM_R1_SINGLE_TURN_INSTRUCT_USER_PROMPT
    multi_template: str = RM_R1_MULTI_TURN_INSTRUCT_USER_PROMPT
    reasons: bool = False  # writes its reasoning first and closes it with </think> (the distilled models)

    def template_name(self, principles: bool, reference: bool) -> str:
        return f"{self.name}-{UPSTREAM_COMMIT}"

    def render(
        self,
        messages: Sequence[Message],
        shown: Sequence[str],
        principles: Sequence[str] | None = None,
        reference: str | None = None,
    ) -> JudgePrompt:
        ab.check_pair(shown, self.name)
        if principles is not None or reference is not None:
            raise ValueError(f"judge {self.name!r} has no slot for principles or a reference answer")
        answer_a, answer_b = (_defang(r) for r in shown)
        if len(messages) == 1 and messages[0].role == "user":
            user = self.single_template.format(
                question=_defang(messages[0].content), answer_a=answer_a, answer_b=answer_b
            )
        else:
            user = self.multi_template.format(
                conversation_1=conversation(messages, answer_a, "Chatbot A"),
                conversation_2=conversation(messages, answer_b, "Chatbot B"),
            )
        return JudgePrompt(user, system=self.system)

    def guidance(self, n: int, max_tokens: int) -> Guidance:
        """A bounded single pass: one free line (the rubric and evaluation, or the distilled model's
        reasoning then ``</think>``), a blank line, then the exact verdict tag. The line is ASCII without
        brackets (:data:`ab.FREE_CHAR`), so a guided sample always parses, and bounded so that it fits
        ``max_tokens`` even at one character a token."""
        line = ab.free_line(ab.line_budget(max_tokens, self._before_answer + ANSWER.format("A")))
        return Guidance(f"{line}{ab.literal(self._before_answer)}{_VERDICT}", max_tokens)

    def continuation(self, text: str, n: int) -> tuple[str, str] | None:
        return None  # single-pass guidance: nothing is ever cut before its verdict

    def parse(self, text: str, n: int) -> Verdict:
        ab.check_n(n)
        if THINK_CLOSE in text:
            text = text.rsplit(THINK_CLOSE, 1)[1]
        elif THINK_OPEN in text:
            raise ParseError("the reasoning was never closed (<think> without </think>)")
        if "[[A]]" in text and "[[B]]" in text:
            raise ParseError("the verdict names both [[A]] and [[B]]")
        tail = text[-TAIL_CHARS:]
        found = [label for label in ab.LABELS if ANSWER.format(label) in tail]
        if not found:
            raise ParseError(f"no <answer>[[A]]</answer> or <answer>[[B]]</answer> in the last {TAIL_CHARS} characters")
        critique = _section(text, "eval") or text[: text.rfind("<answer>")].strip()
        principles = _section(text, "rubric") or _section(text, "solution")
        return Verdict(ab.scores_of(found[0]), principles=principles, critique=critique)

    def slots(self, text: str, n: int) -> tuple[Slot, ...]:
        # The verdict parse reads stands in the last 80 characters: the tag's last occurrence is it.
        label = ab.LABELS[0] if self.parse(text, n).scores[0] == 1 else ab.LABELS[1]
        return (ab.label_slot(text, ANSWER, label),)

    def shown_responses(self, prompt: JudgePrompt) -> list[str]:
        single = _SINGLE.search(prompt.user)
        if single:
            return [single.group(1), single.group(2)]
        multi = _MULTI.search(prompt.user)
        if not multi:
            return []
        # The response is the last turn, after the last "\nChatbot X: " (a response holding such a line
        # itself is read short: this inverse is for fakes and tests only).
        names = ("Chatbot A", "Chatbot B")
        return [block.rpartition(f"\n{name}: ")[2] for block, name in zip(multi.groups(), names, strict=True)]

    def example_output(self, scores: Sequence[float]) -> str:
        label = ab.winner(scores)
        return f"Chatbot {label} is better.{self._before_answer}{ANSWER.format(label)}"

    @property
    def _before_answer(self) -> str:
        """What the guided format writes between its free line and the verdict tag."""
        return _THINK_TAIL if self.reasons else "\n\n"


@dataclass(frozen=True)
class RMR1Instruct(RMR1):
    """``rm-r1-instruct``: gaotang/RM-R1-Qwen2.5-Instruct-7B / -14B / -32B (system + user turn)."""


@dataclass(frozen=True)
class RMR1Distilled(RMR1):
    """``rm-r1-distilled``: gaotang/RM-R1-DeepSeek-Distilled-Qwen-7B / -14B / -32B (one user turn)."""

    name: str = "rm-r1-distilled"
    system: str | None = None
    single_template: str = RM_R1_SINGLE_TURN_REASONING_USER_PROMPT
    multi_template: str = RM_R1_MULTI_TURN_REASONING_USER_PROMPT
    reasons: bool = True
