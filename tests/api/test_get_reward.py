"""OpenRLHF's remote reward model call, exactly as its client sends it."""

from server.engines.fake import FakeEngine
from tests.api.conftest import running_app

# What OpenRLHF's remote_rm_fn_ray posts: decoded prompt+response sequences, their prompts, labels.
PROMPT_A = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
PROMPT_B = "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n"
OPENRLHF_REQUEST = {
    "query": [
        PROMPT_A + "Blue.<|im_end|>",
        PROMPT_A + "Blue is the colour of a clear sky at noon.<|im_end|>",
        PROMPT_B + "hi<|im_end|>",
    ],
    "prompts": [PROMPT_A, PROMPT_A, PROMPT_B],
    "labels": ["", "", ""],
}


async def test_openrlhf_request_gets_one_reward_per_query_with_prompts_grouped():
    engine = FakeEngine()  # longer responses score higher
    async with running_app(engine, k=2) as client:
        r = await client.post("/get_reward", json=OPENRLHF_REQUEST)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"rewards", "scores", "extra_logs"}
    short, long, _ = body["rewards"]
    assert long > short and all(0.0 <= x <= 1.0 for x in body["rewards"])  # unit scale by default
    assert body["scores"] == body["rewards"] and body["extra_logs"]["grm_unscored"] == [0.0, 0.0, 0.0]
    # The two rows of PROMPT_A were judged together in one GRM prompt, PROMPT_B alone.
    shown = sorted(len(req.prompt.split("[The Begin of Response")) - 1 for req in engine.requests)
    assert shown == [1, 2, 2]


async def test_extra_openrlhf_fields_are_accepted_and_the_scale_can_be_chosen():
    body = {**OPENRLHF_REQUEST, "datasources": ["a", "a", "b"], "reward": "raw"}
    async with running_app(FakeEngine(), k=2) as client:
        r = await client.post("/get_reward", json=body)
    assert r.status_code == 200 and all(x >= 2.0 for x in r.json()["rewards"])


async def test_rows_that_cannot_be_split_are_400():
    async with running_app(FakeEngine()) as client:
        no_prompts = await client.post("/get_reward", json={"query": ["abc"]})
        mismatch = await client.post("/get_reward", json={"query": ["abc"], "prompts": ["xyz"]})
        lengths = await client.post("/get_reward", json={"query": ["abc", "d"], "prompts": ["a"]})
    assert no_prompts.status_code == 422 and "prompts" in no_prompts.json()["error"]["message"]
    assert mismatch.status_code == 400 and "does not start with its prompt" in mismatch.json()["error"]["message"]
    assert lengths.status_code == 400 and "2 queries but 1 prompts" in lengths.json()["error"]["message"]


async def test_unscored_rows_get_zero_and_are_flagged():
    async with running_app(FakeEngine(lambda req: ["no verdict"] * req.n), k=2) as client:
        r = await client.post("/get_reward", json=OPENRLHF_REQUEST)
    assert r.json()["rewards"] == [0.0, 0.0, 0.0] and r.json()["extra_logs"]["grm_unscored"] == [1.0, 1.0, 1.0]


async def test_rows_past_the_per_item_limit_are_400_as_on_v1_score():
    engine = FakeEngine()
    body = {"query": [f"{PROMPT_A}answer {i}" for i in range(100)], "prompts": [PROMPT_A] * 100}
    async with running_app(engine, max_responses_per_item=64) as client:
        r = await client.post("/get_reward", json=body)
        same = await client.post("/v1/score", json={"query": "q", "responses": [f"a{i}" for i in range(100)]})
    for answer in (r, same):
        assert answer.status_code == 400, answer.text
        assert (
            answer.json()["error"]["message"]
            == "responses per item = 100 exceeds the server limit max_responses_per_item = 64"
        )
    assert engine.requests == []  # refused before any engine work
