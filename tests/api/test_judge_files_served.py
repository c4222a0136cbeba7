"""The example judge files (examples/judges) served end to end on the fake engine, no code: every route."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine
from server.pipeline.judges import read_judge_file
from server.pipeline.judges.testing import judge_script
from tests.api.conftest import running_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "judges"
POINTWISE, PAIRWISE = EXAMPLES / "pointwise-1-10.yaml", EXAMPLES / "pairwise-ab.yaml"
PROMPT = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
ROLLOUTS = ["Blue.", "Blue, like a clear sky.", "Blue, the colour of the sky on a clear noon."]


def engine_for(path: Path) -> FakeEngine:
    return FakeEngine(judge_script(read_judge_file(path), len if path == PAIRWISE else None))


async def test_the_pointwise_file_scores_each_response_alone_with_its_rubric_and_reference():
    engine = engine_for(POINTWISE)
    body = {"query": "Name a colour.", "responses": ROLLOUTS, "k": 2, "principles": ["Be vivid."], "reference": "Blue"}
    async with running_app(engine, judge_file=POINTWISE) as client:
        r = await client.post("/v1/score", json=body)
        info = (await client.get("/v1/info")).json()
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["scale"] == [1, 10] and answer["template"] == "house-pointwise-v1+rubric+reference"
    assert [x["mean_score"] for x in answer["responses"]] == [1, 3, 5]  # 1 + len // 10
    assert [x["group_size"] for x in answer["responses"]] == [1, 1, 1]
    assert len(engine.requests) == 3 and all(q.system.startswith("You are a careful") for q in engine.requests)
    assert all("Be vivid." in q.prompt and "A correct answer is: Blue" in q.prompt for q in engine.requests)
    judge = info["judge"]
    assert (judge["name"], judge["source"], judge["mode"]) == ("house-pointwise", "file", "single")
    assert info["defaults"]["temperature"] == 0.7 and info["template"] == "house-pointwise-v1"


async def test_the_pointwise_file_serves_the_trainer_routes_rerank_and_render():
    async with running_app(engine_for(POINTWISE), judge_file=POINTWISE, k=2) as client:
        rows = {"query": [PROMPT + r for r in ROLLOUTS], "prompts": [PROMPT] * 3, "labels": ["Blue"] * 3}
        openrlhf = await client.post("/get_reward", json=rows)
        slime = await client.post("/v1/reward", json={"prompt": PROMPT, "response": ROLLOUTS[2], "label": "Blue"})
        rerank = await client.post("/v2/rerank", json={"query": "Name a colour.", "documents": ROLLOUTS})
        render = await client.post("/v1/render", json={"query": "Name a colour.", "responses": ROLLOUTS[:1], "k": 2})
    assert openrlhf.json()["rewards"] == pytest.approx([0, 2 / 9, 4 / 9])
    assert "grm_label_ignored" not in openrlhf.json()["extra_logs"]  # it has a reference slot: labels used
    assert slime.json()["score"] == pytest.approx(4 / 9) and "label_ignored" not in slime.json()
    assert [d["index"] for d in rerank.json()["results"]] == [2, 1, 0]
    (request,) = render.json()["requests"]
    assert request["guide_regex"] == "[ -~]{1,300}\\nScore: ([1-9]|10)" and request["system"] is not None
    assert (request["temperature"], request["top_p"], request["max_tokens"]) == (0.7, 0.95, 512)


async def test_the_pairwise_file_pairs_one_row_calls_and_ignores_labels_it_has_no_slot_for():
    engine = engine_for(PAIRWISE)
    async with running_app(engine, judge_file=PAIRWISE, k=2, group_window_s=1.0) as client:
        answers = await asyncio.gather(
            *(client.post("/get_reward", json={"query": [PROMPT + r], "prompts": [PROMPT], "labels": ["Blue"]})
              for r in ROLLOUTS)
        )  # fmt: skip
        refused = await client.post("/v1/score", json={"query": "Q?", "responses": ROLLOUTS, "reference": "Blue"})
        score = await client.post("/v1/score", json={"query": "Name a colour.", "responses": ROLLOUTS, "k": 2})
    bodies = [a.json() for a in answers]
    assert [b["extra_logs"]["grm_group_size"] for b in bodies] == [[3.0]] * 3
    assert [b["extra_logs"]["grm_label_ignored"] for b in bodies] == [[1.0]] * 3
    assert [b["rewards"][0] for b in bodies] == [0.0, 0.5, 1.0]  # win rates over the circular pairs
    assert refused.status_code == 400 and "house-ab" in refused.json()["error"]["message"]
    assert score.json()["scale"] == [0, 1] and score.json()["template"] == "house-ab-v1"
    assert all("Blue" not in q.prompt.split("[Answer A]")[0] for q in engine.requests)  # the label never shown


async def test_engine_fake_answers_as_the_served_judge_without_an_engine_given():
    """``grm-serve --engine fake --judge-file ...`` tries a profile without a model: the fake scores by length
    in the judge's own format (the default script writes DeepSeek-GRM's, which no other judge parses)."""
    app = build_app(Settings(engine="fake", judge_file=PAIRWISE, k=2))
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready(timeout=10)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grm.test") as client:
            r = await client.post("/v1/score", json={"query": "Q?", "responses": ["a", "a longer answer"]})
    assert [x["status"] for x in r.json()["responses"]] == ["ok", "ok"]
