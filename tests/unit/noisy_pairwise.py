"""A seeded, noisy pairwise judge for property tests of adaptive k on judged pairs (not a test module).

:class:`Graded` is a stand-in pairwise profile (DeepSeek-GRM's prompt with two responses, as
``tests/unit/test_judges_core.py``'s ``Pairwise``) on a chosen scale and grid (1..5 in halves, 1..10,
or an A/B verdict: winner 1, loser 0), that also states a graded preference (1..6, midpoint 3.5, as
Nemotron GenRM's ranking), so every aggregation applies (``mean``, ``win_rate``, ``tiebreaker``).

:func:`seeded_script` answers as vLLM would with seeds: child ``i`` of a request seeded ``s`` is
drawn from ``s + i``. A response ``"response I q=Q s=S u=U"`` gets a score ``Q`` plus noise of up to
``S`` grid steps (clamped to the scale); a sample fails to parse with chance ``U/10`` (the larger
``U`` of the two shown: a response with ``u=9`` is hard to judge, whoever it is against); the
preference is drawn (sometimes exactly the midpoint: a tie for ``win_rate``). :func:`content_script`
answers from the shown responses alone (no seed): a judge whose verdict depends only on what it is
shown (with or without a position bias).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from server.engines.base import Completion, GenerationRequest
from server.engines.fake import shown_responses
from server.pipeline.judges import DeepSeekGRM, Mode, ParseError, Scale, Verdict

_QUALITY = re.compile(r"q=(\d+) s=(\d+) u=(\d+)")
_VERDICT = re.compile(r"Verdict: \\boxed\{(-?[\d.]+(?:, -?[\d.]+)*)\}\nRanking: ([\d.]+)")
PREFERENCES = (1.0, 2.0, 3.0, 3.5, 4.0, 5.0, 6.0)  # 3.5 is the midpoint: no preference
FIVE, TEN, UNIT, PREFERENCE = Scale(1, 5), Scale(1, 10), Scale(0, 1), Scale(1, 6)


def draw(*parts: object) -> int:
    """A deterministic 64-bit draw from ``parts``."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Graded(DeepSeekGRM):
    """A pairwise judge scoring each shown response on ``scale`` in steps of ``step`` (``ab``: the
    winner 1, the loser 0) and stating a graded preference (1 = the first much better .. 6); with
    ``mode`` ``single``, a pointwise judge of one response at a time (its preference unused)."""

    name: str = "graded-pairwise"
    mode: Mode = "pairwise"
    scale: Scale = FIVE
    step: float = 0.5
    ab: bool = False
    max_responses: int | None = 2
    preference_midpoint: float = 3.5
    preference_scale: Scale = PREFERENCE

    def parse(self, text: str, n: int) -> Verdict:
        match = _VERDICT.fullmatch(text)
        scores = tuple(float(s) for s in match.group(1).split(", ")) if match else ()
        if len(scores) != n:
            raise ParseError("no verdict")
        if not all(self.scale.low <= s <= self.scale.high for s in scores):
            raise ParseError("a score off the scale")
        return Verdict(scores, preference=float(match.group(2)))  # type: ignore[union-attr]

    @property
    def steps(self) -> int:
        """Grid steps from the low end to the high one (an A/B judge compares on ten levels)."""
        return 9 if self.ab else round((self.scale.high - self.scale.low) / self.step)

    def grid(self, quality: int, noise: int) -> float:
        """Quality ``quality`` (in grid steps above the low end) moved by ``noise`` steps, on the scale
        (an A/B judge: the level, compared in :meth:`verdict_text`)."""
        level = min(self.steps, max(0, quality + noise))
        return level if self.ab else self.scale.low + level * self.step

    def verdict_text(self, scores: Sequence[float], preference: float, first_on_tie: bool = True) -> str:
        """The output; an A/B judge names the better, equal ones by the preference, then ``first_on_tie``."""
        if self.ab:
            midpoint = self.preference_midpoint
            tie = first_on_tie if preference == midpoint else preference < midpoint
            first_wins = scores[0] > scores[1] or (scores[0] == scores[1] and tie)
            scores = (1.0, 0.0) if first_wins else (0.0, 1.0)
        return f"Verdict: \\boxed{{{', '.join(map(str, scores))}}}\nRanking: {preference}"


# Judges the property tests draw from: (name, profile).
JUDGES: tuple[tuple[str, Graded], ...] = (
    ("five-halves", Graded()),
    ("ten", Graded(scale=TEN, step=1.0)),
    ("ab", Graded(scale=UNIT, step=1.0, ab=True)),
)
# A pointwise judge of one response per prompt: a rerank's item is then several sets, the anchor's apart.
SINGLE = ("single", Graded(name="graded-single", mode="single", scale=TEN, step=1.0, max_responses=1))


def response_text(i: int, quality: int, spread: int, unparseable: int) -> str:
    return f"response {i} q={quality} s={spread} u={unparseable}"


def _qualities(shown: Sequence[str]) -> list[tuple[int, int, int]]:
    return [tuple(map(int, _QUALITY.search(r).groups())) for r in shown]  # type: ignore[union-attr,misc]


def seeded_script(profile: Graded):
    """An engine script answering as ``profile`` with seeded noise (see the module docstring)."""

    def script(request: GenerationRequest) -> list[str | Completion]:
        shown = shown_responses(request.prompt)
        qualities = _qualities(shown)
        out: list[str | Completion] = []
        for i in range(request.n):
            seed = (request.seed or 0) + i
            if draw(seed, shown, "parse") % 10 < max(u for _, _, u in qualities):
                out.append(Completion("Verdict: cut before its scores", "length", 30))
                continue
            noisy = zip(shown, qualities, strict=True)
            scores = [profile.grid(q, draw(seed, r) % (2 * s + 1) - s) for r, (q, s, _) in noisy]
            preference = PREFERENCES[draw(seed, shown, "preference") % len(PREFERENCES)]
            out.append(profile.verdict_text(scores, preference))
        return out

    return script


def content_script(profile: Graded, bias: bool):
    """An engine script whose verdict depends only on the responses shown (no seed). Without ``bias``
    it does not depend on their order either: drawn from the pair in a canonical order, the graded
    preference mirrored when shown the other way. With ``bias``, the first shown gets one grid step
    more, and the rest is drawn from the order shown."""

    def script(request: GenerationRequest) -> list[str | Completion]:
        shown = shown_responses(request.prompt)
        canonical = sorted(shown)
        flipped = canonical != shown
        key = shown if bias else canonical
        if draw(key, "parse") % 10 < max(u for _, _, u in _qualities(shown)):
            return [Completion("Verdict: cut before its scores", "length", 30)] * request.n
        scores = [profile.grid(q, int(bias and position == 0)) for position, (q, _, _) in enumerate(_qualities(shown))]
        preference = PREFERENCES[draw(key, "preference") % len(PREFERENCES)]
        if flipped and not bias:
            preference = 7 - preference  # 1 (the first much better) .. 6, mirrored; 3.5 stays
        return [profile.verdict_text(scores, preference, not flipped)] * request.n

    return script
