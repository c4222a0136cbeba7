"""The Nemotron GenRM profile served end to end on the fake engine: its chat reaches the engine, its
pairs are the pairing's, and each response's mean vote is the reward NeMo Gym's ``aggregate_scores``
(``simple_tiebreaker``, no length bonuses; run from the upstream text) gives for the same verdicts,
parsed by Gym's own ``parse_genrm_output``.
"""

from __future__ import annotations

import pytest

from server.engines.base import ChatTemplateError, GenerationRequest
from server.engines.fake import FakeEngine
from server.pipeline.judges import NemotronGenRM
from server.pipeline.judges.nemotron import final_answer, ranking_for
from server.pipeline.judges.testing import by_length, judge_script, prompt_of
from tests.api.conftest import running_app
from tests.unit import nemotron_upstream as upstream

JUDGE = NemotronGenRM()
# Shown lengths 5, 12, 17 and 45 characters: fake scores 1, 2, 2 (a tie) and 5. The second response's
# reasoning is cut off before the judge sees it.
RESPONSES = [
    "Rome.",
    "<think>" + "Italy's capital: Rome, not Milan. " * 5 + "</think>\n\nIt is Rome.",
    "Rome, of course.!",
    "The capital of Italy is Rome, on the Tiber river.",
]
QUERY = "What is the capital of Italy?"
K = 4


def tie_deciding_script(request: GenerationRequest) -> list[str]:
    """Scores by length as the fake judge does, but a tie leans to the alphabetically first response
    whichever is shown first, so tie-breaks do not cancel between the two orders of a pair."""
    first, second = JUDGE.shown_responses(prompt_of(request))
    s1, s2 = (int(by_length(JUDGE)(r)) for r in (first, second))
    ranking = (3 if first < second else 4) if s1 == s2 else ranking_for(s1, s2)
    return [f'Compared.\n{{"score_1": {s1}, "score_2": {s2}, "ranking": {ranking}}}'] * request.n


def gym_verdicts(engine: FakeEngine, script, responses: list[str]):
    """Every sample the engine wrote, as Gym reads it: (score_1, score_2, ranking) and (i, j, judge_idx)."""
    parse = upstream.gym_utils().parse_genrm_output
    index = {final_answer(r): i for i, r in enumerate(responses)}
    results, metadata = [], []
    for request in engine.requests:
        i, j = (index[r] for r in JUDGE.shown_responses(prompt_of(request)))
        for sample, text in enumerate(script(request)):
            results.append(parse(text, 3.0, 3.5, raise_on_fail=True))
            metadata.append((i, j, sample))
    return results, metadata


def expected_means(aggregation: str, results, metadata, n: int) -> list[float]:
    if aggregation == "tiebreaker":
        return upstream.gym_aggregate(results, metadata, n)
    if aggregation == "mean":  # the judge's own scores: Gym's aggregate with no tie ever broken
        return upstream.gym_aggregate([(s1, s2, 3.5) for s1, s2, _ in results], metadata, n)
    # win_rate (grm-serve's own): 1 to the preferred response, by scores, else by ranking, else 1/2 each
    wins = [
        (1.0, 0.0) if s1 > s2 or (s1 == s2 and r < 3.5) else (0.0, 1.0) if s1 < s2 or r > 3.5 else (0.5, 0.5)
        for s1, s2, r in results
    ]
    return upstream.gym_aggregate([(w1, w2, 3.5) for w1, w2 in wins], metadata, n)


@pytest.mark.parametrize("script", [judge_script(JUDGE), tie_deciding_script], ids=["judge_script", "tie_deciding"])
@pytest.mark.parametrize("aggregation", ["mean", "win_rate", "tiebreaker"])
@pytest.mark.parametrize(
    ("pairing", "n", "requests"),
    [
        ("circular", 3, 6),
        ("circular", 4, 8),
        ("all_pairs", 3, 6),
        ("all_pairs", 4, 12),
    ],
)
async def test_mean_votes_are_gyms_rewards_for_the_same_verdicts(script, aggregation, pairing, n, requests):
    engine = FakeEngine(script)
    responses = RESPONSES[:n]
    settings = {"judge": "nemotron-genrm", "pairing": pairing, "aggregation": aggregation}
    async with running_app(engine, **settings) as client:
        r = await client.post("/v1/score", json={"query": QUERY, "responses": responses, "k": K, "seed": 3})
    assert r.status_code == 200, r.text
    # Engine requests per group of N: circular 2N, all_pairs N(N-1), each pair in both orders, n = k/2.
    assert len(engine.requests) == requests and {q.n for q in engine.requests} == {K // 2}
    results, metadata = gym_verdicts(engine, script, responses)
    got = [item["mean_score"] for item in r.json()["responses"]]
    assert got == pytest.approx(expected_means(aggregation, results, metadata, n))
    assert [item["valid_samples"] for item in r.json()["responses"]] == [
        K * (2 if pairing == "circular" else n - 1)
    ] * n


async def test_tie_breaks_move_rewards_where_plain_means_do_not():
    """The tied pair (responses 1 and 2, both scored 2) is decided by the ranking only under tiebreaker."""
    means = {}
    for aggregation in ("mean", "tiebreaker"):
        engine = FakeEngine(tie_deciding_script)
        async with running_app(engine, judge="nemotron-genrm", pairing="all_pairs", aggregation=aggregation) as client:
            r = await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES[1:3], "k": K})
        means[aggregation] = [item["mean_score"] for item in r.json()["responses"]]
    assert means["mean"] == [2.0, 2.0]
    # "It is Rome." < "Rome, of course.!": response 1 wins every tie by 3.5 - 3 (shown first) or 4 - 3.5.
    assert means["tiebreaker"] == [2.5, 1.5]


async def test_the_engine_gets_the_judges_chat_with_the_principle_and_guidance():
    engine = FakeEngine(judge_script(JUDGE))
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": QUERY},
    ]
    body = {"messages": messages, "responses": RESPONSES[:2], "k": 2, "principles": ["Be brief.", "Be right."]}
    async with running_app(engine, judge="nemotron-genrm", max_tokens=512) as client:
        r = await client.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    roles = [[role for role, _ in q.messages] for q in engine.requests]
    assert roles == [["user", "assistant", "user", "principle", "response_1", "response_2"]] * 2
    first = dict(engine.requests[0].messages)
    assert first["principle"] == "1. Be brief.\n2. Be right."
    assert {first["response_1"], first["response_2"]} == {"Rome.", "It is Rome."}
    assert engine.requests[0].guide_regex == JUDGE.guidance(2, 512).regex
    assert {(q.temperature, q.top_p) for q in engine.requests} == {(0.6, 0.95)}  # Gym's defaults


async def test_a_slot_the_judge_lacks_is_a_400_naming_it():
    async with running_app(FakeEngine(judge_script(JUDGE)), judge="nemotron-genrm-49b") as client:
        r = await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES[:2], "principles": "Be brief."})
        assert r.status_code == 400 and "no slot for principles" in r.json()["error"]["message"]
        r = await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES[:2], "reference": "Rome"})
        assert r.status_code == 400 and "no slot for a reference answer" in r.json()["error"]["message"]


async def test_a_model_whose_template_cannot_render_the_roles_is_a_clear_500():
    failure = ChatTemplateError("the model's chat template dropped the 'response_1' turn")
    async with running_app(FakeEngine(fail_with=failure), judge="nemotron-genrm") as client:
        r = await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES[:2], "k": 2})
    assert r.status_code == 500
    assert r.json()["error"]["message"] == f"the judge cannot run on this model: {failure}"
