"""A judge file's verdict regex that can backtrack exponentially is refused at startup (review of issue #31,
finding 9: ``(?:A|A)+`` passed every check, and the review measured one sample stalling the loop 5.8 s)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from server.config import Settings
from server.pipeline.judges import JUDGES, JudgeFileError
from server.pipeline.judges.custom_file import judge_from_dict

PROFILE = {
    "name": "house-redos",
    "mode": "pairwise",
    "template": "Q: {conversation}\nA: {response_a}\nB: {response_b}\nVerdict?",
    "verdict": {"regex": r"Verdict: (?P<winner>(?:A|A)+|B)$", "output_format": "Verdict: {winner}"},
}


def with_tail(tail: str) -> dict:
    """The profile with a verdict regex of a winner and then ``tail``, optional (its examples still parse)."""
    return PROFILE | {"verdict": PROFILE["verdict"] | {"regex": f"Verdict: (?P<winner>A|B)(?:{tail})?"}}


def test_the_reviews_regex_is_refused_at_startup_naming_the_field(tmp_path: Path):
    path = tmp_path / "redos.yaml"
    path.write_text(yaml.safe_dump(PROFILE))
    with pytest.raises(ValidationError, match=r"judge file redos\.yaml: verdict\.regex: can backtrack exponentially"):
        Settings(engine="fake", judge_file=path)


@pytest.mark.parametrize(
    "tail",
    [
        r"(a+)+",  # nested quantifiers
        r"(?:a|ab)*",  # alternatives that overlap, repeated
        r"(?:\d+,?)+",  # a variable count and an optional separator, repeated
        r"(?:x?y?)*",
        r"(?:a|ab){2,40}",  # a bounded repeat is a loop too
        r"(?:(?:a|a)+b)*+",  # inside a possessive loop, one attempt still backtracks
        r"(?=(?:a|a)+b)",  # inside a lookahead too
    ],
)
def test_a_loop_around_a_choice_is_refused(tail):
    with pytest.raises(JudgeFileError, match=r"^judge file: verdict\.regex: can backtrack exponentially"):
        judge_from_dict(with_tail(tail), frozenset(JUDGES))


SAFE = [
    r"\s*$",
    r"\s+Scores: (?P<x>\d++(?:,\s*+\d++)*)",  # the same list, possessive
    r"\s+(?P<x>[\d, ]+)",  # a character class
    r"(?>a|ab)*",  # an atomic group
    r"(?:c|d)+",  # single characters: the parser makes it a class
    r"\s+Score: \d+(?:\.\d+)?",  # optional parts, no loop around them
    r"(?:ab){3}",  # a fixed count
]


@pytest.mark.parametrize("tail", SAFE)
def test_a_regex_without_such_a_loop_is_served(tail):
    assert judge_from_dict(with_tail(tail), frozenset(JUDGES)).regex == with_tail(tail)["verdict"]["regex"]


def test_the_reviews_regex_rewritten_possessively_is_served_and_reads_its_sample_at_once():
    profile = PROFILE | {"verdict": PROFILE["verdict"] | {"regex": r"Verdict: (?P<winner>A++|B)$"}}
    judge = judge_from_dict(profile, frozenset(JUDGES))
    started = time.perf_counter()
    assert list(re.finditer(judge.regex or "", "Verdict: " + "A" * 100_000 + "!")) == []
    # A guard against exponential backtracking, not a speed target: the original took 2.4 s on 24 A's
    # (measured here) and doubles per A, so at 100,000 it would never end; linear takes milliseconds.
    assert time.perf_counter() - started < 10.0
    assert judge.parse("Verdict: A", 2).scores == (1.0, 0.0)
