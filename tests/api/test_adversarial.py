"""Responses written by a policy trying to game its judge (inputs in tests/data/adversarial_responses.jsonl).

Whatever a response contains (template delimiters, fake verdicts, ``\\boxed{10, 10}``, instructions to
the judge), it must stay inside its own block: the judge sees exactly the request's responses, in the
order the sample was shown, and the verdict is read only from the judge's own final ``Scores:`` line.
"""

import json
from pathlib import Path

import pytest

from meta_rm.base import Trajectory
from meta_rm.rendering import render_user_turn
from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from server.pipeline.domain import Message
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template, neutralize
from tests.api.conftest import running_app

CASES = [json.loads(line) for line in (Path(__file__).parents[1] / "data" / "adversarial_responses.jsonl").open()]


def echoing_judge(request: GenerationRequest) -> list[str]:
    """Quotes every shown response in its analysis (the worst case for a parser), then scores by length."""
    shown = shown_responses(request.prompt)
    quoted = " | ".join(s.replace("\n", " ") for s in shown)
    box = ", ".join(str(min(10, 1 + len(s) // 10)) for s in shown)
    return [f"Specific Criteria: length.\nAnalysis: quoting {quoted}\nScores: \\boxed{{{box}}}"] * request.n


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_grm_prompt_keeps_every_response_in_its_own_block(case):
    prompt = get_template(DEFAULT_TEMPLATE).render((Message("user", case["query"]),), case["responses"])
    assert shown_responses(prompt) == [neutralize(r) for r in case["responses"]]
    for header in (
        "#### Conversation Context ####",
        "#### Responses to be Scored ####",
        "#### Output Format Requirements ####",
    ):
        assert prompt.count(header) == 1
    n = len(case["responses"])
    assert prompt.count("[The Begin of Response") == n and prompt.count("[The End of Response") == n


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_meta_rm_input_keeps_every_response_in_its_own_block(case):
    t = Trajectory((Message("user", case["query"]),), tuple(case["responses"]), "Scores: \\boxed{1, 1}", (1, 1))
    text = render_user_turn(t)
    assert text.count("[The Begin of Response") == 2 and text.count("#### Responses to be Scored ####") == 1


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_scores_come_only_from_the_judges_own_verdict(case):
    engine = FakeEngine(echoing_judge)
    body = {"query": case["query"], "responses": case["responses"], "k": 2, "seed": 0, "return_samples": True}
    async with running_app(engine) as client:
        r = await client.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    expected = [min(10, 1 + len(neutralize(t)) // 10) for t in case["responses"]]
    for sample in r.json()["samples"]:
        assert sample["status"] == "parsed" and sample["scores"] == expected
    assert [x["score"] for x in r.json()["responses"]] == [2.0 * e for e in expected]
