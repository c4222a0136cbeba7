"""The app serves the Prometheus 2 profiles end to end on the fake engine, through ``/v1/score``."""

from __future__ import annotations

import asyncio

import pytest

from server.engines.fake import FakeEngine
from server.pipeline.judges import get_judge
from server.pipeline.judges.testing import judge_script, prompt_of
from tests.api.conftest import running_app

ABSOLUTE = get_judge("prometheus-2-absolute")
RELATIVE = get_judge("prometheus-2-relative")
# Lengths 3, 14, 27, 41: the fake absolute judge scores 1 + len // 10, capped at 5.
ANSWERS = ["Yes", "Yes, it is 4.", "Yes: two plus two is four.", "Yes. Two plus two makes four, as counted."]


def shown(engine: FakeEngine, judge) -> list[tuple[str, ...]]:
    return [tuple(judge.shown_responses(prompt_of(r))) for r in engine.requests]


@pytest.mark.parametrize("n", [1, 2, 4])
async def test_the_absolute_judge_scores_each_response_alone(n):
    engine = FakeEngine(judge_script(ABSOLUTE))
    async with running_app(engine, judge=ABSOLUTE.name) as client:
        r = await client.post("/v1/score", json={"query": "Is 2 + 2 four?", "responses": ANSWERS[:n], "k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["template"] == "prometheus-eval-0.1.20:ABSOLUTE_PROMPT_WO_REF+helpfulness"
    assert [x["mean_score"] for x in body["responses"]] == [1, 2, 3, 5][:n]
    assert [x["votes"] for x in body["responses"]] == [2] * n
    assert sorted(shown(engine, ABSOLUTE)) == sorted((a,) for a in ANSWERS[:n])  # one request per response
    for request in engine.requests:
        assert request.raw and request.system is None and request.n == 2
        assert request.prompt.startswith("[INST] You are a fair judge assistant tasked with")
        assert (request.temperature, request.top_p, request.max_tokens) == (1.0, 0.9, 1024)
        assert request.repetition_penalty == 1.03
        assert request.guide_regex == ABSOLUTE.guidance(1, 1024).regex


async def test_the_relative_judge_compares_two_responses_in_both_orders():
    engine = FakeEngine(judge_script(RELATIVE, quality=len))
    async with running_app(engine, judge=RELATIVE.name) as client:
        r = await client.post("/v1/score", json={"query": "Is 2 + 2 four?", "responses": ANSWERS[:2], "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["template"] == "prometheus-eval-0.1.20:RELATIVE_PROMPT_WO_REF+helpfulness"
    assert [(x["mean_score"], x["votes"]) for x in body["responses"]] == [(0.0, 4), (1.0, 4)]
    assert sorted(shown(engine, RELATIVE)) == [(ANSWERS[0], ANSWERS[1]), (ANSWERS[1], ANSWERS[0])]
    assert [r.n for r in engine.requests] == [2, 2] and all(r.repetition_penalty == 1.03 for r in engine.requests)


async def test_the_relative_judge_pairs_four_responses_circularly_and_counts_wins():
    engine = FakeEngine(judge_script(RELATIVE, quality=len))
    async with running_app(engine, judge=RELATIVE.name) as client:
        r = await client.post(
            "/v1/score", json={"query": "Is 2 + 2 four?", "responses": ANSWERS, "k": 2, "return_samples": True}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    # Pairs (0,1) (1,2) (2,3) (3,0), each shown once in each order: the longer answer always wins.
    assert [x["mean_score"] for x in body["responses"]] == [0.0, 0.5, 0.5, 1.0]
    pairs = {tuple(sorted(s["responses"])) for s in body["samples"]}
    assert pairs == {(0, 1), (1, 2), (2, 3), (0, 3)} and len(engine.requests) == 8
    for sample in body["samples"]:
        assert sample["status"] == "parsed" and sample["critique"].endswith("follows the rubric more closely.")
        longer = max(sample["responses"], key=lambda i: len(ANSWERS[i]))
        assert sample["scores"] == [1 if i == longer else 0 for i in sample["responses"]]


async def test_a_rubric_and_a_reference_reach_the_prompt():
    rubric = ["Is the answer correct?", "Wrong.", "Mostly wrong.", "Half right.", "Nearly right.", "Right."]
    engine = FakeEngine(judge_script(ABSOLUTE))
    async with running_app(engine, judge=ABSOLUTE.name) as client:
        r = await client.post(
            "/v1/score",
            json={"query": "2 + 2?", "responses": ["4"], "k": 1, "principles": rubric, "reference": "Four."},
        )
    assert r.status_code == 200, r.text
    (request,) = engine.requests
    assert "###Reference Answer (Score 5):\nFour.\n\n###Score Rubrics:\n[Is the answer correct?]\nScore 1: Wrong." in (
        request.prompt
    )


@pytest.mark.parametrize("judge", [ABSOLUTE, RELATIVE])
async def test_a_rubric_neither_one_text_nor_six_entries_is_a_400_naming_the_shape(judge):
    engine = FakeEngine(judge_script(judge))
    async with running_app(engine, judge=judge.name) as client:
        r = await client.post(
            "/v1/score", json={"query": "q", "responses": ["a", "b"], "principles": ["Concise?", "Correct?", "Kind?"]}
        )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request"
    assert "one text (the whole rubric, used verbatim) or 6 entries" in error["message"] and "got 3" in error["message"]
    assert engine.requests == []


async def test_a_lone_response_a_relative_judge_can_never_pair_is_a_400():
    engine = FakeEngine(judge_script(RELATIVE))
    async with running_app(engine, judge=RELATIVE.name) as client:
        seeded = await client.post("/v1/score", json={"query": "q", "responses": ["a"], "seed": 1})
        with_samples = await client.post("/v1/score", json={"query": "q", "responses": ["a"], "return_samples": True})
    for r in (seeded, with_samples):
        assert r.status_code == 400
        message = r.json()["error"]["message"]
        assert (
            "judge 'prometheus-2-relative' is pairwise: an item with one response has nothing to be compared with"
            in message
        )
    assert engine.requests == []


async def test_lone_responses_of_one_prompt_from_two_calls_are_paired_and_an_unmatched_one_is_unpaired():
    engine = FakeEngine(judge_script(RELATIVE, quality=len))
    async with running_app(engine, judge=RELATIVE.name, group_window_s=1.0) as client:
        calls = [client.post("/v1/score", json={"query": "q", "responses": [a], "k": 2}) for a in ANSWERS[:2]]
        short, long = await asyncio.gather(*calls)
    async with running_app(FakeEngine(judge_script(RELATIVE)), judge=RELATIVE.name, group_window_s=0.01) as client:
        alone = await client.post("/v1/score", json={"query": "q", "responses": ["a"]})
    assert [short.json()["responses"][0]["mean_score"], long.json()["responses"][0]["mean_score"]] == [0.0, 1.0]
    assert alone.status_code == 200 and alone.json()["responses"][0]["status"] == "unpaired"
