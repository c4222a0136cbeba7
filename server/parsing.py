"""Read principles, critique and scores out of one generated GRM sample (pure).

Rules (``shared/GRM_FORMAT.md``): principles are the ``Specific Criteria:`` line, the critique the
``Analysis:`` line, the scores the integers inside the last ``\\boxed{...}``, one per response in
the order shown. Scores are clipped to 1..10 as the model card's code does; a wrong count of scores,
a non-integer or a missing box makes the sample unparseable. Nothing is ever guessed.
"""

from __future__ import annotations

import re

from server.domain import ParsedOutput

MIN_SCORE = 1
MAX_SCORE = 10

_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_INTEGER = re.compile(r"[+-]?\d+")
_PRINCIPLES = re.compile(r"Specific\s+Criteria\s*:\s*(.*?)\s*(?=\n\s*Analysis\s*:|\Z)", re.S | re.I)
_CRITIQUE = re.compile(r"Analysis\s*:\s*(.*)", re.S | re.I)


class ParseError(ValueError):
    """A sample that cannot be read; the message says why."""


def parse_scores(text: str, n_responses: int) -> tuple[int, ...]:
    """Read the scores from the last ``\\boxed{...}`` of ``text``.

    Raises:
        ParseError: if there is no box, an entry is not an integer, or the count is not
            ``n_responses``.
    """
    boxes = _BOXED.findall(text)
    if not boxes:
        raise ParseError("no \\boxed{...} with scores")
    entries = [e.strip() for e in boxes[-1].split(",")]
    if any(not _INTEGER.fullmatch(e) for e in entries):
        raise ParseError(f"scores are not all integers: {boxes[-1]!r}")
    if len(entries) != n_responses:
        raise ParseError(f"expected {n_responses} scores, found {len(entries)}")
    return tuple(min(MAX_SCORE, max(MIN_SCORE, int(e))) for e in entries)


def parse_sample(text: str, n_responses: int) -> ParsedOutput:
    """Parse one generated sample.

    The scores are read from the text after the last ``Scores:`` label when there is one (so a
    ``\\boxed{}`` quoted inside the analysis cannot stand in for the verdict), else from the whole
    text. Principles and critique are optional for parsing: a model that skips them still votes,
    and they come back empty.

    Raises:
        ParseError: if the scores cannot be read (see :func:`parse_scores`).
    """
    label = list(re.finditer(r"Scores\s*:", text, re.I))
    verdict = text[label[-1].end() :] if label else text
    scores = parse_scores(verdict, n_responses)
    head = text[: label[-1].start()] if label else text
    principles = _PRINCIPLES.search(head)
    critique = _CRITIQUE.search(head)
    return ParsedOutput(
        principles=principles.group(1).strip() if principles else "",
        critique=critique.group(1).strip() if critique else "",
        scores=scores,
    )


def guidance_line_chars(n_responses: int, max_tokens: int) -> int:
    """Characters allowed on each free-text line so a guided sample always fits ``max_tokens``.

    Every generated token carries at least one character of ASCII text, so two lines of this length
    plus the labels and the scores fit the budget even at one character a token. That case is real:
    the bundled model often degenerates into number lists (``9, 9, 9, ...``) that its tokenizer
    splits into single characters. The allowance for labels and scores, ``32 + 6n`` tokens, was
    measured on such samples: ``16 + 4n`` left 8 of 96 smoke samples cut just before their
    ``\\boxed{}`` at ``max_tokens=256``. Raise ``max_tokens`` for longer critiques.
    """
    return max(8, (max_tokens - 32 - 6 * n_responses) // 2)


def guidance_regex(n_responses: int, max_tokens: int) -> str:
    """Regex for vLLM structured outputs that forces the three-line GRM format.

    Free-text lines are bounded by :func:`guidance_line_chars`; scores are forced to integers
    1..10, exactly ``n_responses`` of them. Measured on the bundled model, bounded lines also
    sample faster than an unbounded ``[^\\n]+``.
    """
    line = f"[^\\n]{{1,{guidance_line_chars(n_responses, max_tokens)}}}"
    scores = ", ".join(["(10|[1-9])"] * n_responses)
    return f"Specific Criteria: {line}\nAnalysis: {line}\nScores: \\\\boxed\\{{{scores}\\}}"
