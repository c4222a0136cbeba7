"""Skywork-Critic (Skywork/Skywork-Critic-Llama-3.1-8B, -70B): a pairwise judge answering ``[[A]]`` or ``[[B]]``.

The prompt is one user turn, no system prompt, rendered with the model's Llama-3.1 chat template. The
model card's demo code holds the template; the card's text past its first ~2 KB could not be retrieved,
so :data:`USER_TEMPLATE` is reconstructed from copies that say they copy the card (docs/judges.md,
tests/data/judges/skywork-critic/SOURCE.md): ScalerLab/JudgeBench @ 12a499c
``utils/templates/skywork_critic_prompt.jinja2`` and four others agree on every character of the
instruction text; all but one end the template with ``"\\n"`` after ``[The End of Assistant B's Answer]``
(one drops it on purpose), and that trailing newline is kept. Placeholders as in the copies that name the
card's own: ``{input}``, ``{response_a}``, ``{response_b}``, filled with ``str.format``.

Upstream has no multi-turn template: a single user turn fills ``{input}`` as is; a longer conversation
fills it with its transcript, ``"{Role}: {content}"`` turns joined by a blank line (``User``,
``Assistant``, ``System``: the transcript shape grm-serve's DeepSeek-GRM prompt uses), the last turn the
question. Template markers inside caller text are defanged (:func:`server.pipeline.judges.ab.defang`).

Parsing: the card asks the model to "directly output" the label. No upstream parser exists; the
copies test ``"[[A]]" in output`` first. grm-serve reads exactly one of ``[[A]]`` / ``[[B]]``: both or
neither is unparseable (never the first-found or a random pick, as JudgeBench's ``"A" in output`` would).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from server.pipeline.domain import Message
from server.pipeline.judges import ab
from server.pipeline.judges.base import Guidance, JudgePrompt, Mode, ParseError, Sampling, Scale, Slot, Verdict

USER_TEMPLATE = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. You should choose the assistant that follows the user's instructions and "
    "answers the user's question better. \n"
    "Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and "
    "level of detail of their responses. Avoid any position biases and ensure that the order in which the responses "
    "were presented does not influence your decision. Do not allow the length of the responses to influence your "
    "evaluation. Do not favor certain names of the assistants. Be as objective as possible. \n"
    'Please directly output your final verdict by strictly following this format: "[[A]]" if assistant A is '
    'better, "[[B]]" if assistant B is better.\n'
    "\n"
    "[User Question]\n"
    "{input}\n"
    "\n"
    "[The Start of Assistant A's Answer]\n"
    "{response_a}\n"
    "[The End of Assistant A's Answer]\n"
    "\n"
    "[The Start of Assistant B's Answer]\n"
    "{response_b}\n"
    "[The End of Assistant B's Answer]\n"
)
# The card's evaluation is greedy: the copies use do_sample=False / temperature 0, max_new_tokens 2048.
SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_tokens=2048)
MARKERS = ("[User Question]", "[The Start of Assistant", "[The End of Assistant")
LABEL = "[[{}]]"

_SHOWN = re.compile(
    r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End of Assistant A's Answer\]\n\n"
    r"\[The Start of Assistant B's Answer\]\n(.*?)\n\[The End of Assistant B's Answer\]",
    re.S,
)


def _defang(text: str) -> str:
    return ab.defang(text, MARKERS)


def question(messages: Sequence[Message]) -> str:
    """What fills ``{input}``: a single user turn as is, a longer conversation as its transcript."""
    if len(messages) == 1 and messages[0].role == "user":
        return _defang(messages[0].content)
    return "\n\n".join(f"{m.role.capitalize()}: {_defang(m.content)}" for m in messages)


@dataclass(frozen=True)
class SkyworkCritic:
    """The ``skywork-critic`` profile."""

    name: str = "skywork-critic"
    mode: Mode = "pairwise"
    scale: Scale = ab.SCALE
    takes_reference: bool = False
    takes_principles: bool = False
    sampling: Sampling = SAMPLING
    max_responses: int | None = 2

    def template_name(self, principles: bool, reference: bool) -> str:
        return "skywork-critic-card-v1"

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
        response_a, response_b = (_defang(r) for r in shown)
        return JudgePrompt(USER_TEMPLATE.format(input=question(messages), response_a=response_a, response_b=response_b))

    def guidance(self, n: int, max_tokens: int) -> Guidance:
        """The label alone, as the card asks ("directly output your final verdict"): 5 ASCII characters."""
        return Guidance(ab.literal("[[") + "(A|B)" + ab.literal("]]"), max_tokens)

    def continuation(self, text: str, n: int) -> tuple[str, str] | None:
        return None  # single-pass guidance

    def parse(self, text: str, n: int) -> Verdict:
        ab.check_n(n)
        found = [label for label in ab.LABELS if LABEL.format(label) in text]
        if len(found) != 1:
            raise ParseError("the output names both [[A]] and [[B]]" if found else "no [[A]] or [[B]] in the output")
        rest = text.replace(LABEL.format(found[0]), "").strip()  # any rationale the model wrote anyway
        return Verdict(ab.scores_of(found[0]), critique=rest)

    def slots(self, text: str, n: int) -> tuple[Slot, ...]:
        label = ab.LABELS[0] if self.parse(text, n).scores[0] == 1 else ab.LABELS[1]
        return (ab.label_slot(text, LABEL, label),)

    def shown_responses(self, prompt: JudgePrompt) -> list[str]:
        found = _SHOWN.search(prompt.user)
        return [found.group(1), found.group(2)] if found else []

    def example_output(self, scores: Sequence[float]) -> str:
        return LABEL.format(ab.winner(scores))
