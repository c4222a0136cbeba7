"""The Nemotron GenRM profiles: their chat equals NeMo Gym's, their parser reads what Gym's and NeMo-RL's
read (never their defaults), their guidance yields parseable verdicts within budget.

Upstream code runs from the verbatim copies in tests/data/judges/nemotron-genrm (see nemotron_upstream).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.pipeline.domain import Message
from server.pipeline.judges import NemotronGenRM, NemotronGenRM49B, ParseError, get_judge
from server.pipeline.judges.nemotron import final_answer, principle_text
from tests.unit import nemotron_upstream as upstream

GENRM, GENRM_49B = NemotronGenRM(), NemotronGenRM49B()
HISTORY = [
    Message("user", "What is the capital of France?"),
    Message("assistant", "Paris."),
    Message("user", "And of Italy? Answer in one word."),
]
GYM_HISTORY = [{"role": m.role, "content": m.content} for m in HISTORY]


def chat_of(judge, shown, principles=None) -> list[dict[str, str]]:
    prompt = judge.render(HISTORY, shown, principles)
    return [{"role": role, "content": content} for role, content in prompt.messages]


def test_the_chat_is_nemo_gyms_for_the_same_comparison():
    gym = upstream.gym_messages(GYM_HISTORY, (upstream.response_obj("Rome."), upstream.response_obj("Milan, I think.")))
    assert chat_of(GENRM, ["Rome.", "Milan, I think."]) == gym
    assert [m["role"] for m in gym][-2:] == ["response_1", "response_2"]


def test_a_principle_becomes_gyms_principle_turn_before_the_responses():
    principle = "The response should be concise and accurate."  # Gym README's example principle
    gym = upstream.gym_messages(
        GYM_HISTORY, (upstream.response_obj("Rome."), upstream.response_obj("Milan.")), principle, use_principle=True
    )
    assert chat_of(GENRM, ["Rome.", "Milan."], [principle]) == gym
    assert gym[-3] == {"role": "principle", "content": principle}


def test_gyms_default_principle_is_sent_verbatim_as_one_criterion():
    default = upstream.gym_default_principle()
    gym = upstream.gym_messages(
        GYM_HISTORY, (upstream.response_obj("Rome."), upstream.response_obj("Milan.")), None, use_principle=True
    )
    assert chat_of(GENRM, ["Rome.", "Milan."], [default]) == gym


def test_several_criteria_become_one_numbered_principle():
    assert principle_text(["Be brief.", " Be correct. "]) == "1. Be brief.\n2. Be correct."
    assert principle_text([" as given "]) == " as given "


def test_candidates_are_shown_without_their_reasoning_as_gym_drops_reasoning_items():
    shown = ["<think>Italy's capital is Rome.</think>\n\nRome.", "<think>Unsure.</think>"]
    gym = upstream.gym_messages(
        GYM_HISTORY,
        (upstream.response_obj("Rome.", "Italy's capital is Rome."), upstream.response_obj("", "Unsure.")),
    )
    assert chat_of(GENRM, shown) == gym
    assert gym[-1]["content"] == "None"  # Gym's placeholder for an empty final answer


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain", "plain"),
        ("a</think>b</think>\n final", "final"),  # after the last </think>, as NeMo-RL splits
        ("<think>cut inside the reasoning", "None"),
        ("  ", "None"),
        ("x < y <think> in prose", "x < y <think> in prose"),
    ],
)
def test_final_answer(text, shown):
    assert final_answer(text) == shown


def test_the_render_refuses_what_the_profile_has_no_slot_for():
    with pytest.raises(ValueError, match="compares 2 responses"):
        GENRM.render(HISTORY, ["a", "b", "c"])
    with pytest.raises(ValueError, match="reference"):
        GENRM.render(HISTORY, ["a", "b"], reference="Rome")
    with pytest.raises(ValueError, match="principles"):
        GENRM_49B.render(HISTORY, ["a", "b"], ["Be brief."])


def test_shown_responses_invert_the_render_and_the_log_text_reads_the_chat():
    prompt = GENRM.render(HISTORY, ["<think>r</think>Rome.", "Milan."], ["Be brief."])
    assert GENRM.shown_responses(prompt) == ["Rome.", "Milan."]
    assert prompt.user.endswith("[principle]\nBe brief.\n\n[response_1]\nRome.\n\n[response_2]\nMilan.")


# Parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "output", "asserted"), upstream.gym_parser_cases())
def test_gyms_own_parser_tests(name, output, asserted):
    if asserted is None:  # Gym asserts its defaults (or a raise): grm-serve drops the sample instead
        with pytest.raises(ParseError):
            GENRM.parse(output, 2)
        return
    verdict = GENRM.parse(output, 2)
    assert (*verdict.scores, verdict.preference) == (asserted["score_1"], asserted["score_2"], asserted["ranking"])


def test_a_missing_key_is_unparseable_where_gym_fills_its_default():
    gym = upstream.gym_utils().parse_genrm_output('{"score_1": 4, "ranking": 2}', 3.0, 3.5, raise_on_fail=True)
    assert gym == (4.0, 3.0, 2.0)
    with pytest.raises(ParseError, match="lacks score_2"):
        GENRM.parse('{"score_1": 4, "ranking": 2}', 2)


def test_the_boxed_sections_of_the_49b_genrm_read_as_nemo_rl_reads_them():
    text = upstream.BOXED_EXAMPLE.read_text()
    assert upstream.nemo_rl_parse(text) == (2.0, 4.0, 6.0)
    for judge in (GENRM, GENRM_49B):
        verdict = judge.parse(text, 2)
        assert (verdict.scores, verdict.preference) == ((2.0, 4.0), 6.0)


@pytest.mark.parametrize(
    "text",
    [
        '{"score_1": 6, "score_2": 3, "ranking": 2}',  # score out of 1..5
        '{"score_1": 4, "score_2": 3, "ranking": 0}',  # ranking out of 1..6
        '{"score_1": 4, "score_2": 3, "ranking": 7}',
        '{"score_1": true, "score_2": 3, "ranking": 2}',
        '{"score_1": 4, "score_2": 3, "ranking": NaN}',
        '{"overall": {"score_1": 4, "score_2": 3}}',
        '```json\n{"score_1": 4, "score_2": 3, "ranking": 2\n```',  # never closed
        '<think>I would say {"score_1": 4, "score_2": 3, "ranking": 2}',  # cut inside its reasoning
        "[The Begin of Individual Scores]\n\\boxed{2, 4}\n[The End of Individual Scores]",  # no ranking
        "[The Begin of Individual Scores]\n\\boxed{2}\n[The End of Individual Scores]\n"
        "[The Begin of Ranking Score]\n\\boxed{6}\n[The End of Ranking Score]",
        "[The Begin of Individual Scores]\n\\boxed{2, 4}\n[The End of Individual Scores]\n"
        "[The Begin of Ranking Score]\n\\boxed{9}\n[The End of Ranking Score]",
        "",
    ],
)
def test_malformed_verdicts_are_unparseable(text):
    with pytest.raises(ParseError):
        GENRM.parse(text, 2)


def test_the_verdict_is_read_after_the_reasoning_and_gyms_picks_hold():
    thought = '<think>Draft: {"score_1": 1, "score_2": 1, "ranking": 6}</think>\n'
    verdict = GENRM.parse(thought + 'Final.\n```json\n{"score_1": 4, "score_2": 3, "ranking": 2}\n```', 2)
    assert (verdict.scores, verdict.preference) == ((4.0, 3.0), 2.0)
    assert verdict.critique.startswith("Draft:") and verdict.critique.endswith("Final.")
    nested = json.dumps(
        {
            "rubric_evaluations": [{"score_1": 1, "score_2": 5, "ranking": 6}],
            "overall": {"score_1": 4, "score_2": "3", "ranking": 2.0},
        }
    )
    assert GENRM.parse(nested, 2).scores == (4.0, 3.0)
    two = '{"score_1": 1, "score_2": 2, "ranking": 5} then {"score_1": 5, "score_2": 2, "ranking": 1}'
    assert GENRM.parse(two, 2).scores == (5.0, 2.0)  # unfenced: the last one


_VALUES = st.one_of(
    st.integers(-1, 8), st.floats(allow_nan=True), st.sampled_from(["4", "x", ""]), st.booleans(), st.none()
)
_VERDICTS = st.fixed_dictionaries(
    {"score_1": st.integers(1, 5), "score_2": st.one_of(st.integers(1, 5), st.just("4")), "ranking": st.integers(0, 6)},
    optional={"note": _VALUES},
)
_OBJECTS = st.one_of(
    _VERDICTS, st.dictionaries(st.sampled_from(["score_1", "score_2", "ranking", "note"]), _VALUES)
).map(json.dumps)
_SEGMENTS = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
    _OBJECTS,
    _OBJECTS.map(lambda o: f"```json\n{o}\n```"),
    _OBJECTS.map(lambda o: f'{{"rubric_evaluations": [], "overall": {o}}}'),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_SEGMENTS, max_size=5).map("\n".join))
def test_whatever_grm_serve_reads_gym_reads_the_same_and_what_gym_cannot_read_neither_can_it(text):
    parse = upstream.gym_utils().parse_genrm_output
    try:
        gym = parse(text, 3.0, 3.5, raise_on_fail=True)
    except upstream.gym_utils().GenRMOutputParseError:
        gym = None
    try:
        verdict = GENRM.parse(text, 2)
    except ParseError:
        return
    assert gym == (*verdict.scores, verdict.preference)


# Guidance --------------------------------------------------------------------------------------


@pytest.mark.parametrize("judge", [GENRM, GENRM_49B])
@pytest.mark.parametrize("scores", [(1, 5), (3, 3), (4.4, 3.6), (5, 4), (2, 1)])
def test_example_outputs_follow_the_guidance_and_parse_back(judge, scores):
    guidance = judge.guidance(2, 512)
    text = judge.example_output(scores)
    assert re.fullmatch(guidance.regex, text)
    verdict = judge.parse(text, 2)
    assert verdict.scores == tuple(float(min(5, max(1, round(s)))) for s in scores)
    first, second = verdict.scores
    assert (verdict.preference < 3.5) == (first >= second)  # the ranking agrees with the scores


@pytest.mark.parametrize("judge", [GENRM, GENRM_49B])
@pytest.mark.parametrize("max_tokens", [64, 100, 200, 300, 1024, 16384])
def test_the_longest_guided_sample_fits_the_budget_with_its_end_token(judge, max_tokens):
    guidance = judge.guidance(2, max_tokens)
    if guidance is None:  # too small to hold the verdict: left unguided
        assert judge.line_chars(max_tokens) < 1
        return
    chars = int(re.match(r"\[.*?\]\{1,(\d+)\}", guidance.regex).group(1))
    longest = "x" * chars + "\n" + judge.verdict_text(5, 5, 6)
    assert re.fullmatch(guidance.regex, longest) and len(longest) + 1 <= max_tokens
    assert not re.fullmatch(guidance.regex, "x" * (chars + 1) + "\n" + judge.verdict_text(5, 5, 6))
    assert guidance.max_tokens == max_tokens and not guidance.continue_cut


def test_the_guided_reasoning_line_cannot_open_a_think_block_an_object_or_a_fence():
    regex = GENRM.guidance(2, 512).regex
    verdict = GENRM.verdict_text(4, 3, 2)
    for bad in ("<think>", "{", "}", "`", "é"):
        assert not re.fullmatch(regex, f"ok {bad} ok\n{verdict}")
    assert re.fullmatch(regex, "Response 1 [a] is right; 2 is off (by 3%) ~ ok!\n" + verdict)


def test_the_profiles_are_registered_with_gyms_and_nemo_rls_sampling():
    gym, nemo_rl = get_judge("nemotron-genrm").sampling, get_judge("nemotron-genrm-49b").sampling
    assert (gym.temperature, gym.top_p, gym.max_tokens) == (0.6, 0.95, 16384)
    assert (nemo_rl.temperature, nemo_rl.top_p, nemo_rl.max_tokens) == (0.0, 1.0, 32768)
    assert GENRM.preference_midpoint == 3.5 and (GENRM.preference_scale.low, GENRM.preference_scale.high) == (1, 6)
