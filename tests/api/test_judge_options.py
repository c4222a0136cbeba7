"""Options around the judge: aggregation and meta RM by judge at startup, trainer labels by the judge's
reference slot, the prompt version per item, and the judge in /v1/info and the metrics."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.config import Settings
from server.engines.fake import FakeEngine
from server.pipeline.judges import get_judge
from server.pipeline.judges.testing import judge_script
from server.pipeline.prompts import PRINCIPLES_TEMPLATE, REFERENCE_TEMPLATE
from tests.api.conftest import running_app

PROMPT = "<|im_start|>user\nWhat is 6 x 7?<|im_end|>\n<|im_start|>assistant\n"
ROWS = {"query": [PROMPT + "42.", PROMPT + "It is 42."], "prompts": [PROMPT, PROMPT]}


def engine_for(profile: str) -> FakeEngine:
    return FakeEngine(judge_script(get_judge(profile)))


@pytest.mark.parametrize("profile", ["skywork-critic", "rm-r1-instruct", "deepseek-grm"])
def test_tiebreaker_is_refused_at_startup_for_a_judge_that_states_no_preference(profile):
    with pytest.raises(ValidationError, match=f"--aggregation tiebreaker: .*{profile!r} does not"):
        Settings(engine="fake", judge=profile, aggregation="tiebreaker")


def test_tiebreaker_starts_for_nemotron_genrm_which_states_a_ranking():
    assert Settings(engine="fake", judge="nemotron-genrm", aggregation="tiebreaker").aggregation == "tiebreaker"


@pytest.mark.parametrize("profile", ["rm-r1-instruct", "skywork-critic", "nemotron-genrm", "nemotron-genrm-49b"])
def test_meta_rm_auto_is_none_for_a_judge_the_embedded_meta_rm_was_not_trained_on(profile):
    assert Settings(judge=profile).meta_rm_spec() is None  # the embedded model on vLLM, the default
    assert Settings(judge=profile, meta_rm="some/meta-rm").meta_rm_spec() == "some/meta-rm"  # asked for: kept


def test_meta_rm_auto_is_still_the_embedded_one_for_deepseek_grm():
    assert Settings().meta_rm_spec() == "embedded"


@pytest.mark.parametrize("profile", ["skywork-critic", "nemotron-genrm"])
async def test_labels_are_ignored_and_reported_under_a_judge_without_a_reference_slot(profile):
    engine = engine_for(profile)
    async with running_app(engine, judge=profile, k=2) as client:
        r = await client.post("/get_reward", json={**ROWS, "labels": ["forty-two", None]})
        slime = await client.post("/v1/reward", json={"prompt": PROMPT, "response": "42.", "label": "forty-two"})
        metrics = (await client.get("/metrics")).text
    assert r.status_code == 200, r.text
    assert r.json()["extra_logs"]["grm_label_ignored"] == [1.0, 0.0]
    assert slime.status_code == 200 and slime.json()["label_ignored"] is True
    assert "grm_labels_ignored_total 2.0" in metrics
    assert engine.requests and not any("forty-two" in str(q) for q in engine.requests)  # judged without them


async def test_labels_reference_stays_strict_and_ignore_reports_nothing():
    async with running_app(engine_for("skywork-critic"), judge="skywork-critic", openrlhf_labels="reference") as c:
        strict = await c.post("/get_reward", json={**ROWS, "labels": ["42", "42"]})
    async with running_app(engine_for("skywork-critic"), judge="skywork-critic", openrlhf_labels="ignore") as c:
        ignored = await c.post("/get_reward", json={**ROWS, "labels": ["42", "42"]})
    assert strict.status_code == 400 and "no slot for a reference answer" in strict.json()["error"]["message"]
    assert ignored.status_code == 200 and "grm_label_ignored" not in ignored.json()["extra_logs"]


async def test_labels_still_reach_deepseek_grm_and_its_answers_carry_no_new_field():
    engine = FakeEngine()
    async with running_app(engine, k=1, group_window_s=0) as client:
        r = await client.post("/get_reward", json={**ROWS, "labels": ["42", "42"]})
        slime = await client.post("/v1/reward", json={"prompt": PROMPT, "response": "42.", "label": "42"})
    assert "grm_label_ignored" not in r.json()["extra_logs"] and "label_ignored" not in slime.json()
    assert all("#### Reference Answer ####\n42\n" in q.prompt for q in engine.requests)


async def test_each_item_names_the_prompt_version_its_slots_give():
    body = {
        "items": [
            {"query": "Q?", "responses": ["a", "b"]},
            {"query": "Q?", "responses": ["a", "b"], "principles": ["Be right."]},
            {"query": "Q?", "responses": ["a", "b"], "reference": "a"},
        ]
    }
    async with running_app(FakeEngine()) as client:
        batch = (await client.post("/v1/score", json=body)).json()
        single = (await client.post("/v1/score", json=body["items"][1])).json()
    templates = [i["template"] for i in batch["items"]]
    assert templates == ["deepseek-grm-default-v1", PRINCIPLES_TEMPLATE, REFERENCE_TEMPLATE]
    assert batch["template"] == "deepseek-grm-default-v1" and single["template"] == PRINCIPLES_TEMPLATE
    async with running_app(engine_for("nemotron-genrm"), judge="nemotron-genrm") as client:
        genrm = (await client.post("/v1/score", json=body["items"][1])).json()
    assert genrm["template"] == "nemotron-genrm-principle-v1"


async def test_info_and_build_info_name_the_judge_and_rewards_are_bucketed_on_its_scale():
    async with running_app(engine_for("skywork-critic"), judge="skywork-critic", aggregation="win_rate") as client:
        info = (await client.get("/v1/info")).json()["judge"]
        await client.post("/v1/score", json={"query": "Q?", "responses": ["a", "bb"], "k": 2})
        metrics = (await client.get("/metrics")).text
    assert info == {
        "name": "skywork-critic",
        "source": "builtin",
        "mode": "pairwise",
        "scale": [0.0, 1.0],
        "output_scale": [0.0, 1.0],
        "takes_reference": False,
        "takes_principles": False,
        "pool_size": 4,
        "groups_across_calls": True,
        "pairing": "circular",
        "aggregation": "win_rate",
    }
    assert 'judge="skywork-critic"' in metrics and 'judge_mode="pairwise"' in metrics
    assert 'grm_reward_score_bucket{le="0.5"}' in metrics and 'grm_reward_score_bucket{le="1.0"} 2.0' in metrics
