"""``votes: "soft"`` through every route, with adaptive k, the meta RM, grouping and dedup, on the fake
engine's deterministic logprobs (the default ``graded`` model: a written digit 0.6, its neighbours 0.15)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meta_rm.fake import FakeMetaRM
from server.config import Settings
from server.engines.fake import FakeEngine
from server.engines.fake_tokens import certain
from server.pipeline.judges import read_judge_file
from server.pipeline.judges.testing import judge_script
from server.pipeline.soft_values import SOFT_LOGPROBS
from tests.api.conftest import running_app

QUERY = "Which answer is better?"
RESPONSES = ["short", "a much longer answer than that", "middle length"]
CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def soft_means(answer: dict) -> list[float]:
    """Each response's mean of the soft votes its kept samples gave it, from the samples."""
    votes: list[list[float]] = [[] for _ in answer["responses"]]
    for s in answer["samples"]:
        if s["kept"]:
            for caller, v in zip(s["responses"], s["soft_scores"], strict=True):
                votes[caller].append(v)
    return [sum(v) / len(v) for v in votes]


async def test_a_soft_score_call_sums_the_samples_soft_votes() -> None:
    async with running_app(FakeEngine(), group_window_s=0) as client:
        r = await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES, "k": 4, "seed": 1,
                                                 "votes": "soft", "return_samples": True})  # fmt: skip
    answer = r.json()
    assert r.status_code == 200 and answer["votes"] == "soft"
    assert [x["mean_score"] for x in answer["responses"]] == pytest.approx(soft_means(answer))
    for x in answer["responses"]:
        assert x["score"] == pytest.approx(x["mean_score"] * x["votes"])
    for s in answer["samples"]:
        assert s["status"] == "parsed" and s["soft_source"] == "sampled"
        assert len(s["soft_scores"]) == len(s["scores"]) and s["soft_scores"] != s["scores"]  # graded: unsure


async def test_the_servers_votes_flag_is_the_default_and_info_says_it() -> None:
    async with running_app(FakeEngine(), votes="soft", group_window_s=0) as client:
        info = (await client.get("/v1/info")).json()
        answer = (await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES[:2], "k": 2})).json()
        hard = (await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES[:2], "k": 2,
                                                     "votes": "hard"})).json()  # fmt: skip
    assert info["votes"] == "soft"
    assert answer["votes"] == "soft" and hard["votes"] == "hard"
    assert [x["mean_score"] for x in hard["responses"]] == [1.0, 4.0]  # the length script's integers


async def test_a_certain_judge_answers_the_same_soft_or_hard() -> None:
    answers = {}
    async with running_app(FakeEngine(logprob_model=certain), group_window_s=0) as client:
        for votes in ("hard", "soft"):
            body = {"query": QUERY, "responses": RESPONSES, "k": 4, "seed": 2, "votes": votes}
            answers[votes] = (await client.post("/v1/score", json=body)).json()
    assert answers["soft"]["responses"] == answers["hard"]["responses"]


async def test_only_soft_calls_ask_the_engine_for_logprobs() -> None:
    engine = FakeEngine()
    async with running_app(engine, group_window_s=0) as client:
        body = {"query": QUERY, "responses": RESPONSES, "k": 2, "seed": 3}
        await client.post("/v1/score", json=body)
        hard = len(engine.requests)
        await client.post("/v1/score", json={**body, "votes": "soft"})
    assert {r.logprobs for r in engine.requests[:hard]} == {None}
    assert {r.logprobs for r in engine.requests[hard:]} == {SOFT_LOGPROBS}


async def test_soft_votes_reach_the_trainer_routes() -> None:
    prompt = CHATML.format(QUERY)
    async with running_app(FakeEngine(), group_window_s=0) as client:
        scored = (await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES[:2], "k": 8,
                                                       "votes": "soft"})).json()  # fmt: skip
        rows = {"query": [prompt + r for r in RESPONSES[:2]], "prompts": [prompt] * 2, "reward": "mean"}
        got = (await client.post("/get_reward", json={**rows, "votes": "soft"})).json()
        rollout = {"prompt": prompt, "response": RESPONSES[1]}
        one = (await client.post("/v1/reward", json={**rollout, "votes": "soft"})).json()
        hard = (await client.post("/v1/reward", json=rollout)).json()
    assert got["votes"] == "soft" and one["votes"] == "soft" and hard["votes"] == "hard"
    assert got["rewards"] == pytest.approx([x["mean_score"] for x in scored["responses"]])
    assert one["score"] != hard["score"]  # a lone response's soft vote is not its hard integer's
    assert 0 <= one["score"] <= 1


async def test_soft_votes_rerank() -> None:
    docs = ["tiny", "a somewhat longer document", "the longest document of them all, by far", "mid one"]
    async with running_app(FakeEngine(), max_group_size=2) as client:
        r = await client.post("/v1/rerank", json={"query": QUERY, "documents": docs, "k": 2, "votes": "soft"})
    answer = r.json()
    assert r.status_code == 200 and answer["meta"]["grm"]["votes"] == "soft"
    assert answer["results"][0]["index"] == 2
    assert all(0 <= d["relevance_score"] <= 1 for d in answer["results"])


@pytest.mark.parametrize("rule", ["rank", "stderr", "confident"])
async def test_adaptive_rules_stop_on_soft_votes(rule: str) -> None:
    # Votes 1 and 6 as the length script writes them; softly about 1.9 and 5.8, every sample alike.
    far = ["short", "a response of fifty characters, give or take a few"]
    body = {"query": QUERY, "responses": far, "k": 16, "seed": 4, "votes": "soft", "adaptive": rule,
            "return_samples": True}  # fmt: skip
    async with running_app(FakeEngine(), group_window_s=0) as client:
        answer = (await client.post("/v1/score", json=body)).json()
        full = (await client.post("/v1/score", json={**body, "adaptive": "off"})).json()
    assert answer["votes"] == "soft" and answer["stop_reason"] in (rule, "k")
    assert 4 <= answer["k_used"] < 16  # the fake's votes are far apart: it stops before k
    means = [x["mean_score"] for x in answer["responses"]]
    assert means == pytest.approx(soft_means(answer))
    # Sums stay comparable with full k: the k-normalised sum is the mean times the votes at full k.
    for x, f in zip(answer["responses"], full["responses"], strict=True):
        assert x["normalized_score"] == pytest.approx(x["mean_score"] * 16)
        assert f["normalized_score"] == pytest.approx(f["score"])


async def test_the_meta_rm_keeps_its_best_half_of_soft_samples() -> None:
    meta = FakeMetaRM(lambda t: float(len(t.output)))
    body = {"query": QUERY, "responses": RESPONSES[:2], "k": 4, "seed": 5, "votes": "soft", "return_samples": True}
    async with running_app(FakeEngine(), meta_rm=meta, group_window_s=0) as client:
        answer = (await client.post("/v1/score", json=body)).json()
    assert answer["k_meta"] == 2
    assert sum(s["kept"] for s in answer["samples"]) == 2
    assert [x["mean_score"] for x in answer["responses"]] == pytest.approx(soft_means(answer))


async def test_rows_group_across_calls_only_with_rows_of_the_same_votes() -> None:
    engine = FakeEngine(delay=0.01)
    prompt = CHATML.format(QUERY)
    async with running_app(engine, group_window_s=0.2) as client:
        calls = [
            client.post("/v1/reward", json={"prompt": prompt, "response": r, "votes": v})
            for r, v in ((RESPONSES[0], "soft"), (RESPONSES[1], "soft"), (RESPONSES[2], "hard"))
        ]
        answers = [r.json() for r in await asyncio.gather(*calls)]
    assert [a["group_size"] for a in answers] == [2, 2, 1]
    assert [a["votes"] for a in answers] == ["soft", "soft", "hard"]
    prompts = [r for r in engine.requests if not r.answer_token_ids]
    assert {(r.logprobs, len(r.prompt) > 0) for r in prompts} == {(SOFT_LOGPROBS, True), (None, True)}


async def test_a_soft_body_is_not_the_answer_to_the_same_hard_body() -> None:
    body = {"query": QUERY, "responses": RESPONSES[:2], "k": 2}
    async with running_app(FakeEngine(), group_window_s=0, votes="soft") as client:
        default = (await client.post("/v1/score", json=body)).json()
        hard = (await client.post("/v1/score", json={**body, "votes": "hard"})).json()
        again = (await client.post("/v1/score", json=body)).json()  # deduplicated: the same body again
    assert default["votes"] == again["votes"] == "soft" and hard["votes"] == "hard"
    assert default["responses"] == again["responses"] != hard["responses"]


async def test_soft_metrics_count_scoring_passes_and_unreadable_samples() -> None:
    async with running_app(FakeEngine(), group_window_s=0) as client:
        await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES, "k": 2, "votes": "soft"})
        metrics = (await client.get("/metrics")).text
    passes = [line for line in metrics.splitlines() if line.startswith("grm_soft_vote_passes_total ")]
    assert passes and float(passes[0].split()[-1]) > 0  # graded puts mass on a "1": what follows is asked
    assert 'grm_samples_total{status="no_soft_score"} 0.0' in metrics


async def test_an_unknown_votes_value_is_a_schema_error() -> None:
    async with running_app(FakeEngine()) as client:
        r = await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES, "votes": "fuzzy"})
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request"


async def test_render_says_a_soft_calls_requests_ask_for_logprobs() -> None:
    body = {"query": QUERY, "responses": RESPONSES[:2], "k": 2, "seed": 6}
    async with running_app(FakeEngine()) as client:
        soft = (await client.post("/v1/render", json={**body, "votes": "soft"})).json()
        hard = (await client.post("/v1/render", json=body)).json()
    assert {r["logprobs"] for r in soft["requests"]} == {SOFT_LOGPROBS}
    assert all("logprobs" not in r for r in hard["requests"])


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "judges"


@pytest.mark.parametrize("name", ["pointwise-1-10.yaml", "pairwise-ab.yaml"])
async def test_the_example_judge_files_vote_softly(name: str) -> None:
    path = EXAMPLES / name
    judge = read_judge_file(path)
    body = {"query": QUERY, "responses": RESPONSES, "k": 2, "votes": "soft", "return_samples": True}
    async with running_app(FakeEngine(judge_script(judge)), judge_file=path, group_window_s=0) as client:
        answer = (await client.post("/v1/score", json=body)).json()
    low, high = answer["scale"]
    samples = answer["samples"]
    assert samples and {s["status"] for s in samples} == {"parsed"}
    assert all(low <= v <= high for s in samples for v in s["soft_scores"])
    assert [x["mean_score"] for x in answer["responses"]] == pytest.approx(soft_means(answer))


def fractional_judge(tmp_path: Path) -> Path:
    """A judge file scoring on 0.5..4.5: no integers to read a soft vote over."""
    text = (EXAMPLES / "pointwise-1-10.yaml").read_text().replace("scale: [1, 10]", "scale: [0.5, 4.5]")
    path = tmp_path / "half.yaml"
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("guidance:")))
    return path


async def test_soft_votes_are_refused_for_a_judge_whose_scale_has_no_integer_values(tmp_path: Path) -> None:
    path = fractional_judge(tmp_path)
    async with running_app(FakeEngine(), judge_file=path) as client:
        r = await client.post("/v1/score", json={"query": QUERY, "responses": RESPONSES, "votes": "soft"})
    assert r.status_code == 400 and "soft votes need a scale of integers" in r.json()["error"]["message"]
    with pytest.raises(ValueError, match="--votes soft"):
        Settings(engine="fake", judge_file=path, votes="soft")
