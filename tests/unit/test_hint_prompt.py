"""SPCT's hinted sampling as a judge-prompt variant: DeepSeek-GRM's prompt with the preferred response named."""

from __future__ import annotations

import pytest

from server.pipeline.domain import Message
from server.pipeline.judges.deepseek import DeepSeekGRM, HintedDeepSeekGRM
from server.pipeline.prompts import DEFAULT_TEMPLATE, HINT_TEMPLATE, get_template

CHAT = (Message("user", "Which is the capital of France?"),)
GOOD, BAD = "Paris.", "Lyon."


@pytest.mark.parametrize(("shown", "position"), [([GOOD, BAD], 1), ([BAD, GOOD], 2)])
def test_the_hint_names_the_preferred_response_where_it_is_shown(shown, position):
    prompt = HintedDeepSeekGRM(preferred=GOOD).render(CHAT, shown).user
    assert f"#### Hint ####\nResponse {position} is the best of the responses" in prompt


def test_the_hint_sits_between_the_responses_and_the_output_format():
    prompt = HintedDeepSeekGRM(preferred=GOOD).render(CHAT, [BAD, GOOD]).user
    assert prompt.index("[The End of Response 2]") < prompt.index("#### Hint ####")
    assert prompt.index("#### Hint ####") < prompt.index("#### Output Format Requirements ####")


def test_without_the_hint_section_the_prompt_is_the_plain_one_byte_for_byte():
    hinted = HintedDeepSeekGRM(preferred=GOOD).render(CHAT, [BAD, GOOD]).user
    plain = DeepSeekGRM().render(CHAT, [BAD, GOOD]).user
    section = "\n\n#### Hint ####\nResponse 2 is the best of the responses: score it strictly higher than every other."
    assert hinted.replace(section, "") == plain and section in hinted


def test_the_hinted_judge_reads_and_parses_like_deepseek_grm():
    judge = HintedDeepSeekGRM(preferred=GOOD)
    prompt = judge.render(CHAT, [BAD, GOOD])
    assert judge.shown_responses(prompt) == [BAD, GOOD]
    assert judge.parse(judge.example_output([2, 9]), 2).scores == (2, 9)
    assert judge.template_name(False, False) == HINT_TEMPLATE


def test_a_hint_for_a_response_not_shown_is_refused():
    with pytest.raises(ValueError, match="not among"):
        HintedDeepSeekGRM(preferred="Marseille.").render(CHAT, [GOOD, BAD])
    with pytest.raises(ValueError, match="names no response"):
        get_template(DEFAULT_TEMPLATE).render(CHAT, [GOOD, BAD], hint=3)


def test_the_hint_template_is_not_a_serving_template():
    with pytest.raises(KeyError):
        get_template(HINT_TEMPLATE)
