"""Read principles, critique and scores out of one generated GRM sample (pure).

Rules (DeepSeek-GRM's output format, README "How it works"): principles are the ``Specific
Criteria:`` line, the critique the ``Analysis:`` line, the scores the integers inside the last
``\\boxed{...}``, one per response in the order shown. Scores are clipped to 1..10 as the model
card's code does; a wrong count of scores, a non-integer or a missing box makes the sample
unparseable. Nothing is ever guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.pipeline.domain import ParsedOutput

MIN_SCORE = 1
MAX_SCORE = 10

_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_INTEGER = re.compile(r"[+-]?\d+")
_CRITERIA = re.compile(r"Specific\s+Criteria\s*:\s*", re.I)
# "Analysis:" with the whitespace before it, tried only where that whitespace starts (after a
# non-space), so a run of spaces or newlines is scanned once, not once per character in it.
_ANALYSIS_LINE = re.compile(r"(?<!\s)(\s*)Analysis\s*:", re.I)
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
    critique = _CRITIQUE.search(head)
    return ParsedOutput(
        principles=_principles(head),
        critique=critique.group(1).strip() if critique else "",
        scores=scores,
    )


def score_spans(text: str, n_responses: int) -> list[tuple[int, int]]:
    """Where in ``text`` the scores :func:`parse_sample` reads stand: each entry of the box it reads, as
    ``(start, end)`` character offsets of the entry without its surrounding spaces.

    Raises:
        ParseError: as :func:`parse_sample`.
    """
    parse_sample(text, n_responses)
    label = list(re.finditer(r"Scores\s*:", text, re.I))
    box = list(_BOXED.finditer(text, label[-1].end() if label else 0))[-1]
    spans, at = [], box.start(1)
    for entry in box.group(1).split(","):
        lead = len(entry) - len(entry.lstrip())
        spans.append((at + lead, at + lead + len(entry.strip())))
        at += len(entry) + 1
    return spans


def _principles(head: str) -> str:
    """The text after the first ``Specific Criteria:`` up to the first later line that opens with
    ``Analysis:`` (after any whitespace), or up to the end; "" without the label.

    Linear in ``head``: a lazy regex with a lookahead for ``\\n\\s*Analysis`` (what this replaces)
    backtracked cubically on a run of newlines (2,000 of them took 20 s).
    """
    label = _CRITERIA.search(head)
    if label is None:
        return ""
    start = label.end()
    for analysis in _ANALYSIS_LINE.finditer(head, start):
        if "\n" in analysis.group(1):  # "Analysis:" opens a line
            return head[start : analysis.start()].strip()
    return head[start:].strip()


# The guided format, piece by piece: the labels the regex forces around the two free-text lines.
CRITERIA_LABEL = "Specific Criteria: "
ANALYSIS_LABEL = "\nAnalysis: "
SCORES_LABEL = "\nScores: \\boxed{"
SCORES_CLOSE = "}"


def _literal(text: str) -> str:
    """``text`` as a regex that matches it exactly, escaping only what the labels hold (``\\``,
    newline, braces) so the regex stays in the plain dialect every structured-output backend reads."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("{", "\\{").replace("}", "\\}")


_CRITERIA_RE, _ANALYSIS_RE = _literal(CRITERIA_LABEL), _literal(ANALYSIS_LABEL)

# Characters a continuation may add to a free-text line it completes. Continuation lines are ASCII
# only, so each character is at most one token and the reserve below is a bound, not an estimate.
CONTINUATION_LINE_CHARS = 16


def guidance_line_chars(n_responses: int, max_tokens: int) -> int:
    """Characters allowed on each free-text line so a bounded guided sample always fits ``max_tokens``.

    Only for budgets too small for the two-pass plan (:func:`plan_guidance`). Every generated token
    carries at least one character of ASCII text, so two lines of this length plus the labels and
    the scores fit the budget even at one character a token. That case is real: the bundled model
    often degenerates into number lists (``9, 9, 9, ...``) that its tokenizer splits into single
    characters. The allowance for labels and scores, ``32 + 6n`` tokens, was measured on such
    samples: ``16 + 4n`` left 8 of 96 smoke samples cut just before their ``\\boxed{}`` at
    ``max_tokens=256``.
    """
    return max(8, (max_tokens - 32 - 6 * n_responses) // 2)


def _scores_regex(n_responses: int) -> str:
    scores = ", ".join(["(10|[1-9])"] * n_responses)
    return f"{_literal(SCORES_LABEL)}{scores}{_literal(SCORES_CLOSE)}"


def guidance_regex(n_responses: int, max_tokens: int) -> str:
    """Bounded single-pass regex: the three-line GRM format with lines of at most
    :func:`guidance_line_chars` characters, so a sample always ends parseable within ``max_tokens``.

    Bounded repetition is what makes the structured-output work expensive (2.7x slower than unbounded
    lines on an H100, docs/benchmarks.md), so it is used only when the budget is too small for
    :func:`open_guidance_regex` plus a continuation.
    """
    line = f"[^\\n]{{1,{guidance_line_chars(n_responses, max_tokens)}}}"
    return f"{_CRITERIA_RE}{line}{_ANALYSIS_RE}{line}{_scores_regex(n_responses)}"


def open_guidance_regex(n_responses: int) -> str:
    """The three-line GRM format with unbounded free-text lines (cheap to enforce).

    A sample may run out of budget before its scores; :func:`continuation` completes it.
    """
    return f"{_CRITERIA_RE}[^\\n]+{_ANALYSIS_RE}[^\\n]+{_scores_regex(n_responses)}"


def continuation_reserve(n_responses: int) -> int:
    """The most tokens a continuation can take: the longest text :func:`continuation` allows, one
    token per byte (a byte-level or byte-fallback tokenizer never needs more), plus the end token."""
    longest_scores = ", ".join(["10"] * n_responses)
    longest = (
        2 * CONTINUATION_LINE_CHARS + len(ANALYSIS_LABEL) + len(SCORES_LABEL) + len(longest_scores) + len(SCORES_CLOSE)
    )
    return longest + 1


@dataclass(frozen=True)
class GuidancePlan:
    """How to guide a sample of ``n_responses`` responses within ``max_tokens``.

    ``continue_cut`` plans are two-pass: generate with :func:`open_guidance_regex` and ``max_tokens``
    (the budget less :func:`continuation_reserve`); a sample the budget cut before its scores is then
    completed by a short guided continuation of its own text, which fits the reserve. Either way no
    guided sample ends unparseable for lack of budget, and the total stays within the caller's budget.
    """

    regex: str
    max_tokens: int
    continue_cut: bool


def plan_guidance(n_responses: int, max_tokens: int) -> GuidancePlan:
    """Two-pass when the reserve is at most half the budget, else the bounded single pass."""
    reserve = continuation_reserve(n_responses)
    if max_tokens >= 2 * reserve:
        return GuidancePlan(open_guidance_regex(n_responses), max_tokens - reserve, continue_cut=True)
    return GuidancePlan(guidance_regex(n_responses, max_tokens), max_tokens, continue_cut=False)


def continuation(text: str, n_responses: int) -> tuple[str, str] | None:
    """How to complete a guided sample that the budget cut: ``(kept_text, regex_for_the_rest)``.

    ``text`` is what the open regex produced before the budget ran out, so it is a prefix of the
    format. The kept text is ``text`` itself when the cut fell inside a free-text line, or ``text``
    up to the end of the last whole line when it fell inside a label or the scores line. The regex
    closes the current line (up to :data:`CONTINUATION_LINE_CHARS` more ASCII characters), writes
    any missing line, and the scores. Returns None for a text that is not such a prefix (nothing
    is guessed: the sample stays unparseable).
    """
    m = CONTINUATION_LINE_CHARS

    def line(started: bool) -> str:
        return f"[ -~]{{{0 if started else 1},{m}}}"

    scores = _scores_regex(n_responses)
    if not text.startswith(CRITERIA_LABEL):
        return None
    criteria, newline, after = text[len(CRITERIA_LABEL) :].partition("\n")
    if not newline:  # cut inside the criteria line
        return text, f"{line(bool(criteria))}{_ANALYSIS_RE}{line(False)}{scores}"
    label = ANALYSIS_LABEL[1:]
    if not after.startswith(label):
        if label.startswith(after):  # cut inside "Analysis: "
            return text[: len(CRITERIA_LABEL) + len(criteria)], f"{line(True)}{_ANALYSIS_RE}{line(False)}{scores}"
        return None
    analysis, newline, _ = after[len(label) :].partition("\n")
    kept = CRITERIA_LABEL + criteria + ANALYSIS_LABEL + analysis
    # Cut inside the analysis line (kept == text) or inside the scores line (which is dropped).
    return kept, f"{line(bool(analysis))}{scores}"
