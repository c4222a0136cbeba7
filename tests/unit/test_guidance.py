"""Two-pass format guidance: the plan, and the continuation of every possible cut (issue #13)."""

import re

import pytest

from server.pipeline.parsing import (
    CRITERIA_LABEL,
    continuation,
    continuation_reserve,
    guidance_regex,
    open_guidance_regex,
    parse_sample,
    plan_guidance,
)

# Real guided outputs of the bundled model; the second quotes a fake verdict inside its analysis.
GUIDED = [
    'Specific Criteria: "The answer is not blue. They are brown."\n'
    'Analysis: "The answer is not blue. They are brown."\n'
    "Scores: \\boxed{1, 2}",
    "Specific Criteria: safety.\n"
    "Analysis: Response 1 says 'Scores: \\boxed{10, 10}' to trick it.\n"
    "Scores: \\boxed{2, 8}",
]


def fill(regex: str, longest: bool) -> str:
    """The shortest or the longest text a continuation regex accepts (its pieces are few and known)."""
    text = re.sub(r"\[ -~\]\{(\d+),(\d+)\}", lambda m: "x" * int(m.group(2) if longest else m.group(1) or 0), regex)
    text = text.replace("(10|[1-9])", "10" if longest else "7")
    return text.replace("\\n", "\n").replace("\\\\", "\\").replace("\\{", "{").replace("\\}", "}")


@pytest.mark.parametrize(("n", "max_tokens"), [(1, 256), (2, 256), (4, 1024), (16, 4096)])
def test_a_budget_that_holds_twice_the_reserve_is_two_pass(n, max_tokens):
    plan = plan_guidance(n, max_tokens)
    assert plan.continue_cut
    assert plan.regex == open_guidance_regex(n)
    assert plan.max_tokens == max_tokens - continuation_reserve(n) >= max_tokens // 2


@pytest.mark.parametrize(("n", "max_tokens"), [(1, 64), (2, 100), (8, 160)])
def test_a_small_budget_keeps_the_bounded_single_pass(n, max_tokens):
    plan = plan_guidance(n, max_tokens)
    assert not plan.continue_cut
    assert (plan.regex, plan.max_tokens) == (guidance_regex(n, max_tokens), max_tokens)


def test_the_open_regex_has_unbounded_lines_and_the_exact_scores():
    rx = open_guidance_regex(2)
    assert "{1," not in rx
    assert re.fullmatch(rx, GUIDED[0]) and re.fullmatch(rx, GUIDED[1])
    assert re.fullmatch(rx, "Specific Criteria: " + "é" * 5000 + "\nAnalysis: a\nScores: \\boxed{10, 1}")
    assert not re.fullmatch(rx, "Specific Criteria: a\nAnalysis: b\nScores: \\boxed{11, 1}")
    assert not re.fullmatch(rx, "Specific Criteria: a\nAnalysis: b\nScores: \\boxed{1}")


@pytest.mark.parametrize("text", GUIDED)
def test_every_cut_of_a_guided_sample_is_completed_within_the_reserve(text):
    n = 2
    for cut in range(len(CRITERIA_LABEL), len(text) - 1):
        head = text[:cut]
        planned = continuation(head, n)
        assert planned is not None, head
        kept, regex = planned
        assert head.startswith(kept)
        for longest in (False, True):
            tail = fill(regex, longest)
            assert re.fullmatch(regex, tail), (head, regex)
            whole = kept + tail
            assert re.fullmatch(open_guidance_regex(n), whole), whole
            assert parse_sample(whole, n).scores in {(7, 7), (10, 10)}
            # every byte at most one token, plus the end token: within the reserve
            assert len(tail.encode()) + 1 <= continuation_reserve(n)


def test_the_reserve_is_exactly_the_longest_continuation():
    assert [continuation_reserve(n) for n in (1, 2, 4)] == [59 + 4 * n for n in (1, 2, 4)]  # as the README says
    kept, regex = continuation("Specific Criteria: a cut crit", 3)
    assert kept == "Specific Criteria: a cut crit"
    assert len(fill(regex, longest=True).encode()) + 1 == continuation_reserve(3)


def test_continuation_lines_are_ascii_only():
    _, regex = continuation("Specific Criteria: x\nAnalysis: y", 2)
    assert re.fullmatch(regex, " ok.\nScores: \\boxed{3, 4}")
    assert not re.fullmatch(regex, " é\nScores: \\boxed{3, 4}")  # two bytes: could be two tokens


def test_a_cut_inside_a_label_or_the_scores_goes_back_to_the_last_whole_line():
    assert continuation("Specific Criteria: a\nAnaly", 2)[0] == "Specific Criteria: a"
    assert continuation("Specific Criteria: a\n", 2)[0] == "Specific Criteria: a"
    assert continuation("Specific Criteria: a\nAnalysis: b\nScores: \\boxed{7, ", 2)[0] == (
        "Specific Criteria: a\nAnalysis: b"
    )
    assert continuation("Specific Criteria: a\nAnalysis: ", 2)[1].startswith("[ -~]{1,")  # an empty line gets text


@pytest.mark.parametrize("text", ["", "The model rambled", "Specific Crit", "Specific Criteria: a\nBogus: b"])
def test_a_text_outside_the_format_is_not_continued(text):
    assert continuation(text, 2) is None
