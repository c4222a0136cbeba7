"""Pairwise judges and one-row calls: a prompt's rollouts meet across calls, then form pairs; a rollout
left alone is ``unpaired`` (null score; 0.0 and unscored on trainer routes); an item that can never pair is
a 400 naming it; a single-response judge's rows are never held."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from server.engines.fake import FakeEngine
from server.pipeline.domain import Message
from server.pipeline.judges import get_judge, read_judge_file
from server.pipeline.judges.testing import judge_script, prompt_of
from server.serving.validation import ItemOptions
from tests.api.conftest import running_app, wait_until

PROMPT = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
ROLLOUTS = [f"Colour {i}: {'very ' * i}blue." for i in range(8)]  # longer is better, no two tie
POINTWISE = Path(__file__).resolve().parents[2] / "examples" / "judges" / "pointwise-1-10.yaml"


def one_row(response: str) -> dict:
    return {"query": [PROMPT + response], "prompts": [PROMPT]}


def components(pairs: object) -> list[set[str]]:
    """The pools the pairs span: connected components of the responses they link."""
    pools: list[set[str]] = []
    for pair in pairs:  # type: ignore[attr-defined]
        touching = [p for p in pools if p & pair]
        merged = set(pair).union(*touching)
        pools = [p for p in pools if p not in touching] + [merged]
    return pools


def engine_for(profile: str) -> FakeEngine:
    return FakeEngine(judge_script(get_judge(profile), len))


def shown(engine: FakeEngine, profile: str) -> list[tuple[str, ...]]:
    judge = get_judge(profile)
    return [tuple(judge.shown_responses(prompt_of(r))) for r in engine.requests]


@pytest.mark.parametrize("profile", ["rm-r1-instruct", "nemotron-genrm"])
async def test_one_row_calls_of_a_prompt_meet_in_pools_and_are_judged_in_circular_pairs(profile):
    engine = engine_for(profile)
    async with running_app(engine, judge=profile, k=2, group_window_s=1.0) as client:
        answers = await asyncio.gather(*(client.post("/get_reward", json=one_row(r)) for r in ROLLOUTS))
        metrics = (await client.get("/metrics")).text
    bodies = [a.json() for a in answers]
    assert [b["extra_logs"]["grm_group_size"] for b in bodies] == [[4.0]] * 8
    assert [b["extra_logs"]["grm_unscored"] for b in bodies] == [[0.0]] * 8
    # Two pools of four, each judged in its 4 circular pairs, both orders of each (k/2 = 1 sample per order).
    pairs = Counter(frozenset(s) for s in shown(engine, profile))
    assert len(pairs) == 8 and set(pairs.values()) == {2} and all(len(p) == 2 for p in pairs)
    assert sorted(len(pool) for pool in components(pairs)) == [4, 4]  # pairs never cross pools
    assert "grm_grouped_rows_total 8.0" in metrics


async def test_with_max_group_size_1_pairwise_rows_still_meet_in_pairs():
    """--max-group-size 1 sized the grouper's batches at one row, so no one-row call of a pairwise judge
    ever met another: every rollout went unpaired (reward 0.0)."""
    engine = engine_for("skywork-critic")
    async with running_app(engine, judge="skywork-critic", k=2, group_window_s=1.0, max_group_size=1) as client:
        answers = await asyncio.gather(*(client.post("/get_reward", json=one_row(r)) for r in ROLLOUTS[:4]))
    bodies = [a.json() for a in answers]
    assert [b["extra_logs"]["grm_group_size"] for b in bodies] == [[2.0]] * 4
    assert [b["extra_logs"]["grm_unscored"] for b in bodies] == [[0.0]] * 4
    assert sorted(b["rewards"][0] for b in bodies) == [0.0, 0.0, 1.0, 1.0]  # each pair's longer rollout wins


async def test_an_item_of_three_with_pools_of_two_leaves_no_response_unpaired():
    """Pools of 2 split three responses 2 + 1, and the third went unpaired; now the last pool takes 3."""
    async with running_app(engine_for("skywork-critic"), judge="skywork-critic", max_group_size=2) as client:
        r = await client.post("/v1/score", json={"query": "Q?", "responses": ROLLOUTS[:3], "k": 2})
    assert [x["status"] for x in r.json()["responses"]] == ["ok", "ok", "ok"]
    assert [x["mean_score"] for x in r.json()["responses"]] == [0.0, 0.5, 1.0]


async def test_a_rollout_alone_when_the_window_ends_is_unpaired_everywhere():
    engine = engine_for("rm-r1-instruct")
    async with running_app(engine, judge="rm-r1-instruct", group_window_s=0.01) as client:
        openrlhf = (await client.post("/get_reward", json=one_row("Blue."))).json()
        slime = (await client.post("/v1/reward", json={"prompt": PROMPT, "response": "Red."})).json()
        score = (await client.post("/v1/score", json={"query": "Name a colour.", "responses": ["Green."]})).json()
    assert openrlhf["rewards"] == [0.0] and openrlhf["extra_logs"]["grm_unscored"] == [1.0]
    assert openrlhf["extra_logs"]["grm_k_used"] == [0.0]
    assert (slime["reward"], slime["score"], slime["unscored"], slime["k_used"]) == (0.0, 0.0, True, 0)
    (response,) = score["responses"]
    assert (response["status"], response["score"], response["mean_score"]) == ("unpaired", None, None)
    assert score["k_used"] == 0
    assert engine.requests == []  # nothing to compare: no engine work


@pytest.mark.parametrize(
    ("settings", "body", "why"),
    [
        ({"group_window_s": 0}, {"query": "Q?", "responses": ["a"]}, "--group-window-s 0"),
        ({}, {"query": "Q?", "responses": ["a"], "seed": 3}, "it has a seed"),
        ({}, {"query": "Q?", "responses": ["a"], "return_samples": True}, "with samples"),
        ({}, {"items": [{"query": "Q?", "responses": ["a", "b"]}, {"query": "Q?", "responses": ["a"], "seed": 1}]},
         "it has a seed"),
    ],
)  # fmt: skip
async def test_an_item_that_can_never_pair_is_a_400_naming_the_judge_and_why(settings, body, why):
    engine = engine_for("skywork-critic")
    async with running_app(engine, judge="skywork-critic", **settings) as client:
        r = await client.post("/v1/score", json=body)
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "judge 'skywork-critic' is pairwise" in message and why in message and "at least 2 responses" in message
    assert engine.requests == []


async def test_a_one_document_rerank_on_a_pairwise_judge_is_a_400_and_on_deepseek_grm_is_judged():
    body = {"query": "Q?", "documents": ["only one"]}
    async with running_app(engine_for("skywork-critic"), judge="skywork-critic") as client:
        pairwise = await client.post("/v2/rerank", json=body)
    async with running_app(FakeEngine()) as client:
        grm = await client.post("/v2/rerank", json=body)
    assert pairwise.status_code == 400 and "rerank" in pairwise.json()["error"]["message"]
    assert grm.status_code == 200


async def test_a_one_row_trainer_call_is_refused_only_with_grouping_off():
    async with running_app(engine_for("skywork-critic"), judge="skywork-critic", group_window_s=0) as client:
        r = await client.post("/get_reward", json=one_row("Blue."))
    assert r.status_code == 400 and "--group-window-s 0" in r.json()["error"]["message"]


async def test_identical_requests_to_a_pairwise_judge_share_one_job():
    engine = FakeEngine(judge_script(get_judge("skywork-critic"), len), delay=0.2)
    body = {"query": "Q?", "responses": ROLLOUTS[:3], "k": 2, "seed": 7}
    async with running_app(engine, judge="skywork-critic") as client:
        first, second = await asyncio.gather(*(client.post("/v1/score", json=body) for _ in range(2)))
        metrics = (await client.get("/metrics")).text
    assert first.json()["responses"] == second.json()["responses"]
    assert len(engine.requests) == 6  # one job: 3 circular pairs, 2 orders each
    assert 'grm_deduplicated_requests_total{how="inflight"} 1.0' in metrics


async def test_a_single_response_judges_rows_are_never_held_for_grouping():
    engine = FakeEngine(judge_script(read_judge_file(POINTWISE)))
    async with running_app(engine, judge_file=POINTWISE, k=2, group_window_s=5.0) as client:
        service = client._transport.app.state.service  # type: ignore[attr-defined]
        spec = client._transport.app.state.validator.resolve(  # type: ignore[attr-defined]
            ItemOptions(messages=(Message("user", "Name a colour."),), responses=("Blue.",))
        )
        assert not service.grouper.accepts(spec)
        async with asyncio.timeout(4):  # held for the 5 s window, this would time out
            answers = await asyncio.gather(*(client.post("/get_reward", json=one_row(r)) for r in ROLLOUTS[:3]))
        info = (await client.get("/v1/info")).json()["judge"]
    assert [a.json()["extra_logs"]["grm_group_size"] for a in answers] == [[1.0]] * 3
    assert (info["groups_across_calls"], info["pool_size"]) == (False, 1)
    assert len(engine.requests) == 3


@pytest.mark.parametrize(("pairing", "pairs"), [("circular", 4), ("all_pairs", 6)])
async def test_admission_counts_k_per_pair_and_a_full_pool_for_the_row_that_opens_a_batch(pairing, pairs):
    engine = engine_for("skywork-critic")
    async with running_app(engine, judge="skywork-critic", k=4, pairing=pairing, group_window_s=1.0) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        service, validator = app.state.service, app.state.validator
        four = validator.resolve(ItemOptions(messages=(Message("user", "Q?"),), responses=tuple(ROLLOUTS[:4])))
        one = validator.resolve(ItemOptions(messages=(Message("user", "Name a colour."),), responses=("red",)))
        assert service.work_of(four, 4) == 4 * pairs
        assert service.plan([one], [True])[0] == 4 * pairs  # the batch it opens may fill a pool of 4
        first = asyncio.create_task(client.post("/get_reward", json=one_row(ROLLOUTS[0])))
        await wait_until(lambda: service.grouper.collecting, what="the first row to open a batch")
        assert service.plan([one], [True])[0] == 0  # joining costs nothing more
        await first


async def test_a_pairwise_rerank_with_max_group_size_1_compares_every_document_with_the_anchor():
    """Rerank groups followed --max-group-size, so with 1 every document sat in a group of its own: a pairwise
    judge had nothing to compare, and every relevance was 0."""
    docs = ROLLOUTS[:4]
    engine = engine_for("skywork-critic")
    async with running_app(engine, judge="skywork-critic", k=2, max_group_size=1) as client:
        body = (await client.post("/v2/rerank", json={"query": "Name a colour.", "documents": docs})).json()
    assert [g["documents"] for g in body["meta"]["grm"]["groups"]] == [[0, 1], [0, 2], [0, 3]]
    # Each document beat the anchor (the shortest) in its pair: a win rate of 1 each, ties in caller order.
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == [(1, 1.0), (2, 1.0), (3, 1.0), (0, 0.0)]


async def test_a_single_response_judges_rerank_judges_each_document_once_without_an_anchor():
    engine = FakeEngine(judge_script(read_judge_file(POINTWISE)))
    async with running_app(engine, judge_file=POINTWISE, k=2) as client:
        body = (await client.post("/v2/rerank", json={"query": "Name a colour.", "documents": ROLLOUTS})).json()
    assert [g["documents"] for g in body["meta"]["grm"]["groups"]] == [[i] for i in range(8)]
    assert len(engine.requests) == 8  # no anchor judged again in every group
    assert body["results"][0]["index"] == 7


async def test_a_pairwise_rerank_without_anchor_leaves_no_document_alone():
    """Groups of 2 without the anchor split 5 documents 2 + 2 + 1, and the lone group was a 400 (an item
    that can never pair); the last group now takes 3."""
    body = {"query": "Name a colour.", "documents": ROLLOUTS[:5], "anchor": False}
    async with running_app(engine_for("skywork-critic"), judge="skywork-critic", k=2, max_group_size=2) as client:
        r = await client.post("/v2/rerank", json=body)
    assert r.status_code == 200, r.text
    assert [g["documents"] for g in r.json()["meta"]["grm"]["groups"]] == [[0, 1], [2, 3, 4]]
