"""Judge profile files (``--judge-file``): the examples load, render, guide and parse; every broken file is
refused at startup with a message naming its field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from server.config import Settings
from server.engines.base import GenerationRequest
from server.pipeline.domain import Message
from server.pipeline.judges import JUDGES, JudgeFileError, ParseError, read_judge_file
from server.pipeline.judges.custom_file import judge_from_dict
from server.pipeline.judges.testing import judge_script, prompt_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "judges"
POINTWISE, PAIRWISE = EXAMPLES / "pointwise-1-10.yaml", EXAMPLES / "pairwise-ab.yaml"
QUESTION = [Message("user", "Is the sky blue?")]

GROUP = {
    "name": "house-group",
    "mode": "group",
    "scale": [1, 5],
    "template": "Question: {query}\n{rubric}\n{responses}\nScore each of the {n} answers, then 'Scores: a, b, ...'.",
    "rubric_format": "Criteria:\n{rubric}",
    "verdict": {"after": "Scores:"},
}


def test_the_pointwise_example_renders_its_system_prompt_and_one_response_with_its_slots():
    judge = read_judge_file(POINTWISE)
    assert (judge.name, judge.mode, judge.scale.low, judge.scale.high) == ("house-pointwise", "single", 1, 10)
    assert judge.takes_reference and judge.takes_principles and judge.max_responses == 1
    prompt = judge.render(QUESTION, ["Yes."], ["Be right.", "Be brief."], "Yes, by day.")
    assert prompt.system == "You are a careful, strict grader of assistant answers."
    assert "Judge by these criteria:\nBe right.\nBe brief.\nA correct answer is: Yes, by day.\n" in prompt.user
    assert "[Answer]\nYes.\n[End of Answer]" in prompt.user
    bare = judge.render(QUESTION, ["Yes."])
    assert "criteria" not in bare.user and "correct answer" not in bare.user
    assert judge.template_name(True, True) == "house-pointwise-v1+rubric+reference"
    assert judge.template_name(False, False) == "house-pointwise-v1"


def test_the_pairwise_example_names_a_winner_on_the_0_1_scale():
    judge = read_judge_file(PAIRWISE)
    assert (judge.mode, judge.scale.low, judge.scale.high) == ("pairwise", 0, 1)
    assert not judge.takes_reference and not judge.takes_principles
    assert judge.parse("A is terse.\nVerdict: B", 2).scores == (0.0, 1.0)
    assert judge.parse("Verdict: B, no wait.\nVerdict: A\n", 2).scores == (1.0, 0.0)  # the last verdict counts
    with pytest.raises(ValueError, match="no slot for a reference"):
        judge.render(QUESTION, ["a", "b"], reference="a")


@pytest.mark.parametrize("path", [POINTWISE, PAIRWISE])
def test_an_examples_guidance_matches_its_own_outputs_and_the_fake_judge_answers_in_its_format(path):
    judge = read_judge_file(path)
    n = judge.max_responses or 2
    for scores in ([judge.scale.high] * n, [judge.scale.low] * n):
        assert re.fullmatch(judge.guide or "", judge.example_output(scores))
    shown = ["short", "a much longer answer"][:n]
    prompt = judge.render(QUESTION, shown)
    assert judge.shown_responses(prompt) == shown
    request = GenerationRequest("r", prompt.user, n=2, temperature=1, top_p=1, max_tokens=64, system=prompt.system)
    texts = judge_script(judge)(request)
    assert len(texts) == 2 and judge.shown_responses(prompt_of(request)) == shown
    assert judge.parse(texts[0], n).scores  # the fake's output parses as the judge's own


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Good answer.", "no 'Score:'"),
        ("Score: 11", "off the scale"),
        ("Score: 7/10", "2 numbers"),
        ("Score: seven", "0 numbers"),
    ],
)
def test_an_unreadable_pointwise_verdict_is_a_parse_error_never_a_guess(text, why):
    with pytest.raises(ParseError, match=why):
        read_judge_file(POINTWISE).parse(text, 1)


@pytest.mark.parametrize("text", ["Verdict: C", "No verdict here.", "verdict: a"])
def test_an_unreadable_pairwise_verdict_is_a_parse_error(text):
    with pytest.raises(ParseError):
        read_judge_file(PAIRWISE).parse(text, 2)


def test_a_group_profile_shows_every_response_in_one_prompt_and_reads_one_score_each():
    judge = judge_from_dict(GROUP)
    prompt = judge.render(QUESTION, ["a", "bb", "ccc"], ["Be right."])
    assert "[Response 2]\nbb\n[End of Response 2]" in prompt.user and "the 3 answers" in prompt.user
    assert judge.shown_responses(prompt) == ["a", "bb", "ccc"]
    assert judge.parse("Thinking.\nScores: 3, 5, 1", 3).scores == (3, 5, 1)
    with pytest.raises(ParseError, match="2 numbers"):
        judge.parse("Scores: 3, 5", 3)


def test_a_json_file_is_read_as_json(tmp_path):
    path = tmp_path / "judge.json"
    path.write_text(json.dumps(GROUP))
    assert read_judge_file(path) == judge_from_dict(GROUP)


def broken(**changes: object) -> dict:
    out = dict(GROUP)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (broken(temperature=0.5), "temperature", "Extra inputs"),
        (broken(mode="listwise"), "mode", "group"),
        (broken(name="Has Spaces"), "name", "pattern"),
        (broken(name="skywork-critic"), "name", "built-in"),
        (broken(scale=None), "scale", "give the verdict's scale"),
        (broken(scale=[5, 1]), "scale", "must be below"),
        (broken(template="{query} {response}"), "template", "unknown placeholder"),
        (broken(template="{query} only"), "template", "needs the placeholder"),
        (broken(template="{responses} {0}"), "template", "not a plain name"),
        (broken(template="{responses!r}"), "template", "conversion or format spec"),
        (broken(rubric_format="no slot"), "rubric_format", "must show"),
        (broken(response_format="{i}: {text}"), "response_format", "may use only"),
        (broken(verdict={}), "verdict", "exactly one of"),
        (broken(verdict={"after": "S:", "regex": "x"}), "verdict", "exactly one of"),
        (broken(verdict={"regex": "(?P<score>\\d+)", "output_format": "{score}"}), "verdict.regex", "scores"),
        (broken(verdict={"regex": "(?P<scores>[\\d, ]+"}), "verdict.regex", "does not compile"),
        (broken(verdict={"regex": "Scores: (?P<scores>[\\d, ]+)"}), "verdict.output_format", "needs"),
        (broken(verdict={"after": "Scores:", "output_format": "Total: {scores}"}), "verdict", "does not parse"),
        (broken(guidance="Scores: [1-5]("), "guidance", "does not compile"),
        (broken(guidance="Scores: [1-3](, [1-3])*"), "guidance", "does not match"),
        (broken(sampling={"temperature": -1}), "sampling.temperature", "greater than or equal"),
    ],
)
def test_a_broken_file_is_refused_naming_the_field(data, field, message):
    with pytest.raises(JudgeFileError) as refused:
        judge_from_dict(data, frozenset(JUDGES))
    assert str(refused.value).startswith(f"judge file: {field}: ")
    assert message in str(refused.value)


def test_a_winner_verdict_takes_no_other_scale():
    data = yaml.safe_load(PAIRWISE.read_text()) | {"scale": [1, 10]}
    with pytest.raises(JudgeFileError, match="scale: a winner verdict scores the winner 1"):
        judge_from_dict(data)


def test_unreadable_and_unparseable_files_are_refused(tmp_path):
    with pytest.raises(JudgeFileError, match=r"cannot read missing\.yaml"):
        read_judge_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(JudgeFileError, match="not valid yaml"):
        read_judge_file(bad)


def test_settings_serve_the_file_with_its_name_and_sampling_defaults():
    settings = Settings(engine="fake", judge_file=POINTWISE)
    assert settings.judge == "house-pointwise" and settings.judge_profile().name == "house-pointwise"
    assert (settings.temperature, settings.top_p, settings.max_tokens) == (0.7, 0.95, 512)
    assert Settings(engine="fake", judge_file=POINTWISE, temperature=0.2).temperature == 0.2


def test_settings_refuse_a_broken_file_or_another_judge_beside_it(tmp_path):
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump(broken(verdict={})))
    with pytest.raises(ValidationError, match="verdict: give exactly one of"):
        Settings(engine="fake", judge_file=path)
    with pytest.raises(ValidationError, match="give --judge or --judge-file, not both"):
        Settings(engine="fake", judge="skywork-critic", judge_file=POINTWISE)
