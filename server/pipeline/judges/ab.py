"""What the pairwise A/B judges share (RM-R1, Skywork-Critic): their scale, verdicts, defanging of
caller text, and the pieces of their format guidance (pure).

An A/B judge names the better of the two responses it is shown and never a tie: its verdict scores
the winner 1 and the loser 0 (:data:`SCALE`), so a response's mean vote is its win rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from server.pipeline.judges.base import ParseError, Scale, Slot

SCALE = Scale(0, 1)
LABELS = ("A", "B")

# One character of a guided free-text line: printable ASCII without ``<``, ``>``, ``[`` and ``]``
# (ranges 0x20-0x3B, 0x3D, 0x3F-0x5A, 0x5C, 0x5E-0x7E). ASCII, so each generated token carries at
# least one character and a line of L characters costs at most L tokens (the budget below is a bound,
# not an estimate); no brackets or angle brackets, so the line can neither write a verdict label nor
# open or close a tag, and a guided sample always parses.
FREE_CHAR = r"[ -;=?-Z\\^-~]"

_REGEX_SPECIALS = "\\.^$*+?{}[]()|"


def scores_of(label: str) -> tuple[float, float]:
    """The verdict scores of a winner label: ``A`` -> (1, 0), ``B`` -> (0, 1)."""
    return (1.0, 0.0) if label == "A" else (0.0, 1.0)


def label_slot(text: str, tag: str, label: str) -> Slot:
    """The winner slot of a verdict written as ``tag`` (``"[[{}]]"``) filled with ``label``: the label's
    characters in the last occurrence of the filled tag in ``text`` (which must hold it)."""
    before = tag.index("{}")
    start = text.rindex(tag.format(label)) + before
    return Slot(start, start + len(label), LABELS, "winner")


def winner(scores: Sequence[float]) -> str:
    """The label of the higher-scored of two shown responses (the first on a tie: an A/B judge has none)."""
    first, second = scores
    return "A" if first >= second else "B"


def check_pair(shown: Sequence[object], name: str) -> None:
    """Raises: ValueError: unless exactly two responses are shown."""
    if len(shown) != 2:
        raise ValueError(f"judge {name!r} is pairwise: it shows exactly 2 responses, got {len(shown)}")


def check_n(n: int) -> None:
    """Raises: ParseError: for a sample about other than two responses (nothing to read it as)."""
    if n != 2:
        raise ParseError(f"an A/B verdict judges 2 responses, not {n}")


def defang(text: str, markers: Iterable[str]) -> str:
    """Caller text with each of a template's section markers (``[...``) opened by ``(`` instead, so a
    question or response can neither close its own section nor open a fake one. Text without a marker
    is unchanged byte for byte (the prompts match upstream's exactly)."""
    for marker in markers:
        text = text.replace(marker, "(" + marker[1:])
    return text


def literal(text: str) -> str:
    """``text`` as a regex matching it exactly, in the plain dialect every structured-output backend reads."""
    out = "".join("\\" + c if c in _REGEX_SPECIALS else c for c in text)
    return out.replace("\n", "\\n")


def free_line(max_chars: int) -> str:
    """A guided free-text line of 1 to ``max_chars`` :data:`FREE_CHAR` characters."""
    return f"{FREE_CHAR}{{1,{max(1, max_chars)}}}"


def line_budget(max_tokens: int, fixed: str) -> int:
    """Characters a single free line may take so that the line, the ``fixed`` ASCII text around it and
    the end-of-sequence token fit ``max_tokens`` even at one character a token (at least 1)."""
    return max(1, max_tokens - len(fixed) - 1)
