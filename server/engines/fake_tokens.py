"""The fake engine's tokens and top logprobs: deterministic, and consistent with the text it writes.

:class:`FakeVocabulary` cuts a text into tokens: a letter or a digit is a token of its own, with the
space before it when there is one (``" 7"``, ``" A"``: a token that carries a fixed prefix before the
value, as some real tokenizers write ``" A"``), so ``"10"`` is ``"1"`` then ``"0"`` as on SmolLM2 and
Gemma; any other character is a token. So the vocabulary stays small however long a fake server runs
(a few hundred ids for ASCII text). Ids are given in order of first sight; ``decode`` joins the tokens'
texts.

A *logprob model* says what the fake judge "thought" at a position: ``model(previous, written)`` maps
token texts to logprobs at a position whose previous token's text is ``previous`` (``""`` at the start),
given the token it wrote there, or ``None`` for a scoring pass (a request that only asks what would
follow, ``GenerationRequest.answer_token_ids``), where the fake writes the model's likeliest token. A
model depends only on those two tokens, never on the prompt or the rest of the text, so a response's
soft vote does not depend on which other responses share its prompt (grouping stays invisible).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from server.engines.base import TokenLogprobs

LogprobModel = Callable[[str, str | None], dict[str, float]]

_TOKEN = re.compile(r" ?[A-Za-z\d]|.", re.S)
_DIGIT = re.compile(r" ?\d")
_LABEL = re.compile(r" ?[AB]")


def tokenize(text: str) -> list[str]:
    """The fake's tokens of ``text`` (their texts join to ``text``)."""
    return _TOKEN.findall(text)


class FakeVocabulary:
    """Token texts <-> ids, ids given in order of first sight."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.texts: list[str] = []

    def id_of(self, token: str) -> int:
        if token not in self.ids:
            self.ids[token] = len(self.texts)
            self.texts.append(token)
        return self.ids[token]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.texts[i] for i in ids)

    def logprobs(self, text: str, model: LogprobModel, top: int, previous: str = "") -> TokenLogprobs:
        """``text``'s tokens and, at each, the ``top`` likeliest of ``model`` plus the written token."""
        tokens = tokenize(text)
        ids = tuple(self.id_of(t) for t in tokens)
        before = [previous, *tokens[:-1]]

        def at(p: int) -> dict[int, float]:
            return self._top(model(before[p], tokens[p]), top, tokens[p])

        return TokenLogprobs(ids, at, self.decode)

    def next_token(self, previous: str, model: LogprobModel, top: int) -> tuple[str, dict[int, float]]:
        """A scoring pass: the model's likeliest token after ``previous`` and the top logprobs there."""
        scores = model(previous, None)
        written = max(scores, key=lambda t: (scores[t], t))
        return written, self._top(scores, top, written)

    def _top(self, scores: dict[str, float], top: int, written: str) -> dict[int, float]:
        best = sorted(scores, key=lambda t: (-scores[t], t))[:top]
        return {self.id_of(t): scores[t] for t in dict.fromkeys([written, *best]) if t in scores}


def _logs(probabilities: dict[str, float]) -> dict[str, float]:
    return {t: math.log(p) for t, p in probabilities.items() if p > 0}


def certain(previous: str, written: str | None) -> dict[str, float]:
    """A judge sure of every token it writes (a scoring pass writes a comma, as sure)."""
    return {written if written is not None else ",": 0.0}


def graded(previous: str, written: str | None) -> dict[str, float]:
    """The default model: unsure of its digits and its A/B labels, sure of everything else.

    A first digit ``d`` (``previous`` is no digit) is written with probability 0.6, its neighbours
    ``d - 1`` and ``d + 1`` 0.15 each, ``1`` 0.05 (so a ``10`` may follow: a scoring pass asks) and a
    word that is no value 0.05. After a digit, a ``0`` written there had 0.6 (a comma 0.3, ``}`` 0.1);
    anything else written there had 0.9 and ``0`` 0.1, whatever it is (a scoring pass, which writes
    nothing yet, sees a comma at 0.9): so what a score's first digit weighs does not depend on which
    character ends it, and a response's soft vote not on its place in the box. A label ``A``/``B`` is
    written with 0.7, the other 0.25.
    """
    if _DIGIT.fullmatch(previous):
        if written == "0":
            return _logs({"0": 0.6, ",": 0.3, "}": 0.1})
        return _logs({"," if written is None else written: 0.9, "0": 0.1})
    if written is not None and _DIGIT.fullmatch(written):
        space, digit = written[:-1], int(written[-1])
        spread = {f"{space}{d}": p for d, p in ((digit - 1, 0.15), (digit + 1, 0.15), (1, 0.05)) if 0 <= d <= 9}
        return _logs({**spread, f"{space}the": 0.05, written: 0.6})
    if written is not None and _LABEL.fullmatch(written):
        other = written[:-1] + ("B" if written[-1] == "A" else "A")
        return _logs({written: 0.7, other: 0.25, f"{written[:-1]}the": 0.05})
    return certain(previous, written)
