"""A judge described by data alone: a user profile file (``--judge-file``) served without code (pure).

:mod:`server.pipeline.judges.custom_file` reads and checks the file; this module is the profile it
builds, behind the same :class:`~server.pipeline.judges.base.Judge` interface as the built-in ones:

* **prompt**: an optional literal system prompt and a user turn, ``template``, whose named placeholders
  are filled with ``str.format``: ``{conversation}`` (a single user turn as is; a longer conversation as
  ``"{Role}: {content}"`` turns joined by a blank line), ``{query}`` (the last user turn), the responses
  by mode (``{response}`` for ``single``; ``{response_a}`` and ``{response_b}`` for ``pairwise``;
  ``{responses}``, each response in ``response_format`` joined by ``response_separator``, and ``{n}``
  for ``group``), ``{reference}`` and ``{rubric}`` (``reference_format`` / ``rubric_format`` filled,
  or empty when an item has none). A template with ``{reference}`` takes a reference, one with
  ``{rubric}`` principles; without them a request giving one is refused (400), never judged without it.
* **verdict** (never a guess: an unreadable sample raises :class:`ParseError`): ``after`` a label, the
  numbers on the rest of the line after its last occurrence (1 for single, 2 for pairwise, one per
  response for group, exactly); or the last match of ``regex``, whose named groups are ``score``
  (single), ``scores`` (group: exactly one number per response), ``score_a`` and ``score_b``, or
  ``winner`` (pairwise: one of ``labels``, the first label naming the first response shown). Every
  score must lie on ``scale``.
* **guidance** (optional): a regex the engine's structured outputs hold every sample to.
* **output_format**: a well-formed output with ``{score}``, ``{scores}``, ``{score_a}``, ``{score_b}`` or
  ``{winner}`` where the verdict goes (:meth:`CustomJudge.example_output`: fakes, tests, and the file's
  self-check); required for a regex verdict, for ``after`` it defaults to ``"{after} {scores}"``.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    integer_values,
)

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
# Placeholders every template may use, and those of each mode.
COMMON = frozenset({"conversation", "query", "reference", "rubric"})
BY_MODE: dict[str, frozenset[str]] = {
    "single": frozenset({"response"}),
    "pairwise": frozenset({"response_a", "response_b"}),
    "group": frozenset({"responses", "n"}),
}
REQUIRED: dict[str, frozenset[str]] = {
    "single": frozenset({"response"}),
    "pairwise": frozenset({"response_a", "response_b"}),
    "group": frozenset({"responses"}),
}
SHOWN = {"single": 1, "pairwise": 2}
MAX_SHOWN = 64  # the most responses a group prompt's inverse tries (the fake engine's reading)
MAX_SOFT_VALUES = 101  # soft votes read a score slot over at most this many integers (0..100)
# Private-use characters mark where caller text goes when a rendering is turned back into a regex.
_OPEN, _CLOSE = "\ue000", "\ue001"
_SENTINEL = re.compile(f"{_OPEN}(\\w+){_CLOSE}")


def placeholders(template: str) -> list[str]:
    """The named placeholders of a ``str.format`` template, in order.

    Raises:
        ValueError: for a positional placeholder (``{}``, ``{0}``), an attribute or index, a conversion
            or a format spec (the template is filled with text, as is).
    """
    names = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"placeholder {{{name}}} is not a plain name (use {{{{ and }}}} for literal braces)")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} has a conversion or format spec; give the bare name")
        names.append(name)
    return names


def number_text(value: float) -> str:
    """A score as a judge writes it: ``7``, not ``7.0``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def transcript(messages: Sequence[Message]) -> str:
    """``{conversation}``: a single user turn as is, a longer conversation as its transcript."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content
    return "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in messages)


@dataclass(frozen=True)
class CustomJudge:
    """A profile from a user's judge file (fields as the file names them; see the module docstring)."""

    name: str
    mode: Mode
    scale: Scale
    template: str
    sampling: Sampling
    system: str | None = None
    reference_format: str = "{reference}"
    rubric_format: str = "{rubric}"
    response_format: str = "[Response {i}]\n{response}\n[End of Response {i}]"
    response_separator: str = "\n\n"
    after: str | None = None  # the verdict's label (the "after" rule), or None for ``regex``
    regex: str | None = None
    labels: tuple[str, str] = ("A", "B")
    output_format: str | None = None  # a well-formed output, for example_output (regex verdicts)
    guide: str | None = None  # the guidance regex
    prompt_name: str | None = None  # the template's versioned name (default: the profile's name)

    @property
    def takes_reference(self) -> bool:
        return "reference" in placeholders(self.template)

    @property
    def takes_principles(self) -> bool:
        return "rubric" in placeholders(self.template)

    @property
    def max_responses(self) -> int | None:
        return SHOWN.get(self.mode)

    @property
    def winner_verdict(self) -> bool:
        """Whether the verdict names a winner (``(?P<winner>...)``) rather than scores."""
        return self.regex is not None and "winner" in re.compile(self.regex).groupindex

    def template_name(self, principles: bool, reference: bool) -> str:
        base = self.prompt_name or self.name
        return base + ("+rubric" if principles else "") + ("+reference" if reference else "")

    def render(
        self,
        messages: Sequence[Message],
        shown: Sequence[str],
        principles: Sequence[str] | None = None,
        reference: str | None = None,
    ) -> JudgePrompt:
        expected = SHOWN.get(self.mode)
        if expected is not None and len(shown) != expected:
            raise ValueError(f"judge {self.name!r} shows {expected} response(s) per prompt, got {len(shown)}")
        if principles is not None and not self.takes_principles:
            raise ValueError(f"judge {self.name!r} has no slot for principles (a rubric)")
        if reference is not None and not self.takes_reference:
            raise ValueError(f"judge {self.name!r} has no slot for a reference answer")
        query = next((m.content for m in reversed(messages) if m.role == "user"), "")
        rubric = "\n".join(p.strip() for p in principles) if principles else None
        return JudgePrompt(self.fill(transcript(messages), query, shown, reference, rubric), system=self.system)

    def fill(
        self, conversation: str, query: str, shown: Sequence[str], reference: str | None, rubric: str | None
    ) -> str:
        """The user turn with every placeholder filled (texts already prepared)."""
        values: dict[str, str] = {
            "conversation": conversation,
            "query": query,
            "reference": "" if reference is None else self.reference_format.format(reference=reference),
            "rubric": "" if rubric is None else self.rubric_format.format(rubric=rubric),
        }
        if self.mode == "single":
            values["response"] = shown[0]
        elif self.mode == "pairwise":
            values["response_a"], values["response_b"] = shown
        else:
            blocks = (self.response_format.format(i=i, response=r) for i, r in enumerate(shown, start=1))
            values["responses"] = self.response_separator.join(blocks)
            values["n"] = str(len(shown))
        return self.template.format(**values)

    def guidance(self, n: int, max_tokens: int) -> Guidance | None:
        return Guidance(self.guide, max_tokens) if self.guide is not None else None

    def continuation(self, text: str, n: int) -> tuple[str, str] | None:
        return None  # single-pass guidance

    def parse(self, text: str, n: int) -> Verdict:
        expected = SHOWN.get(self.mode, n)
        if n != expected:
            raise ParseError(f"judge {self.name!r} judges {expected} response(s) per sample, not {n}")
        if self.after is not None:
            scores, rest = self._after(text, n)
        else:
            scores, rest = self._matched(text, n)
        for s in scores:
            if not self.scale.low <= s <= self.scale.high:
                raise ParseError(f"score {number_text(s)} is off the scale {self.scale.low}..{self.scale.high}")
        return Verdict(tuple(scores), critique=rest.strip())

    def _after(self, text: str, n: int) -> tuple[list[float], str]:
        assert self.after is not None
        at = text.rfind(self.after)
        if at < 0:
            raise ParseError(f"no {self.after!r} in the output")
        line = text[at + len(self.after) :].split("\n", 1)[0]
        numbers = [float(x) for x in NUMBER.findall(line)]
        if len(numbers) != n:
            raise ParseError(f"{len(numbers)} numbers after the last {self.after!r}, expected {n}")
        return numbers, text[:at]

    def _matched(self, text: str, n: int) -> tuple[list[float], str]:
        assert self.regex is not None
        found = list(re.finditer(self.regex, text))
        if not found:
            raise ParseError("the verdict regex does not match the output")
        match = found[-1]
        groups = match.groupdict()
        rest = text[: match.start()]
        if groups.get("winner") is not None:
            label = groups["winner"].strip()
            if label not in self.labels:
                raise ParseError(f"winner {label!r} is none of {list(self.labels)}")
            return ([1.0, 0.0] if label == self.labels[0] else [0.0, 1.0]), rest
        if self.mode == "group":
            numbers = [float(x) for x in NUMBER.findall(groups.get("scores") or "")]
        elif self.mode == "single":
            numbers = [float(x) for x in NUMBER.findall(groups.get("score") or "")]
        else:
            numbers = [float(x) for key in ("score_a", "score_b") for x in NUMBER.findall(groups.get(key) or "")]
        if len(numbers) != n:
            raise ParseError(f"the verdict regex read {len(numbers)} scores, expected {n}")
        return numbers, rest

    def soft_votes_problem(self) -> str | None:
        """Why this profile's verdicts have no soft votes (None: they have): a score on a scale whose ends
        are not integers, or that holds more than :data:`MAX_SOFT_VALUES` integers."""
        if self.winner_verdict:
            return None
        low, high = self.scale.low, self.scale.high
        if not (float(low).is_integer() and float(high).is_integer()):
            return f"judge {self.name!r} scores on {low:g}..{high:g}: soft votes need a scale of integers"
        if len(integer_values(self.scale)) > MAX_SOFT_VALUES:
            return f"judge {self.name!r} scores on more than {MAX_SOFT_VALUES} integers: too many for soft votes"
        return None

    def slots(self, text: str, n: int) -> tuple[Slot, ...]:
        """The verdict's slots: the winner's label, or each number read (empty on a scale whose ends are
        not integers or that holds more than :data:`MAX_SOFT_VALUES` integers)."""
        self.parse(text, n)
        if self.after is not None:
            at = text.rfind(self.after) + len(self.after)
            spans = [(at + m.start(), at + m.end()) for m in NUMBER.finditer(text[at:].split("\n", 1)[0])]
        else:
            assert self.regex is not None
            match = list(re.finditer(self.regex, text))[-1]
            if match.groupdict().get("winner") is not None:
                label = match.group("winner")
                start = match.start("winner") + len(label) - len(label.lstrip())
                return (Slot(start, start + len(label.strip()), self.labels, "winner"),)
            keys = {"group": ("scores",), "single": ("score",), "pairwise": ("score_a", "score_b")}[self.mode]
            spans = [
                (match.start(key) + m.start(), match.start(key) + m.end())
                for key in keys
                if match.group(key) is not None
                for m in NUMBER.finditer(match.group(key))
            ]
        if self.soft_votes_problem() is not None:
            return ()
        values = integer_values(self.scale)
        return tuple(Slot(start, end, values, "score", i) for i, (start, end) in enumerate(spans))

    def shown_responses(self, prompt: JudgePrompt) -> list[str]:
        counts = [SHOWN[self.mode]] if self.mode in SHOWN else range(1, MAX_SHOWN + 1)
        for n in counts:
            for reference in (False, True):
                for rubric in (False, True):
                    found = _inverse(self, n, reference, rubric).fullmatch(prompt.user)
                    if found is not None:
                        return [found.group(f"r{i}") for i in range(n)]
        return []

    def example_output(self, scores: Sequence[float]) -> str:
        if self.output_format is None:
            assert self.after is not None  # a regex verdict has an output format (checked at load)
            return f"{self.after} {', '.join(number_text(s) for s in scores)}"
        texts = [number_text(s) for s in scores]
        values: Mapping[str, str] = {
            "score": texts[0],
            "scores": ", ".join(texts),
            "score_a": texts[0],
            "score_b": texts[-1],
            "winner": self.labels[0] if scores[0] >= scores[-1] else self.labels[1],
        }
        return self.output_format.format(**values)


@functools.lru_cache(maxsize=1024)
def _inverse(judge: CustomJudge, n: int, reference: bool, rubric: bool) -> re.Pattern[str]:
    """A regex matching ``judge``'s user turn for ``n`` responses, each caught as group ``r{i}``."""
    mark = f"{_OPEN}{{}}{_CLOSE}".format
    shown = [mark(f"r{i}") for i in range(n)]
    text = judge.fill(
        mark("conversation"), mark("query"), shown, mark("reference") if reference else None,
        mark("rubric") if rubric else None,
    )  # fmt: skip
    parts, seen = [], set()
    for i, piece in enumerate(_SENTINEL.split(text)):
        if i % 2 == 0:
            parts.append(re.escape(piece))
        elif piece.startswith("r") and piece[1:].isdigit() and piece not in seen:
            seen.add(piece)
            parts.append(f"(?P<{piece}>.*?)")
        else:
            parts.append(".*?")
    return re.compile("".join(parts), re.S)
