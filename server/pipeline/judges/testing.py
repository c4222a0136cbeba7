"""Deterministic fake judges for any profile: engine scripts that answer as the profile would (tests,
``--engine fake``).

A script reads the responses a request shows through the profile's own inverse of its rendering
(:meth:`Judge.shown_responses`) and writes the profile's own well-formed output
(:meth:`Judge.example_output`), scoring each response by its length on the profile's scale, so a test
can predict every vote whatever the judge.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from server.engines.base import GenerationRequest
from server.pipeline.judges.base import Judge, JudgePrompt

Quality = Callable[[str], float]


def prompt_of(request: GenerationRequest) -> JudgePrompt:
    """The judge prompt an engine request carries."""
    return JudgePrompt(request.prompt, request.system, request.messages, request.raw)


def by_length(judge: Judge) -> Quality:
    """Longer is better: ``low + len // 10`` on the judge's scale, capped at its top."""
    low, high = judge.scale.low, judge.scale.high
    return lambda text: min(high, low + len(text) // 10)


def judge_script(judge: Judge, quality: Quality | None = None) -> Callable[[GenerationRequest], Sequence[str]]:
    """An engine script answering as ``judge`` would, every sample alike, by ``quality`` (default
    :func:`by_length`). Pairwise A/B judges prefer the higher-quality response (the first on a tie)."""
    rate = quality or by_length(judge)

    def script(request: GenerationRequest) -> list[str]:
        shown = judge.shown_responses(prompt_of(request))
        return [judge.example_output([rate(r) for r in shown])] * request.n

    return script
