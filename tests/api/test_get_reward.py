"""OpenRLHF's remote reward model call, exactly as its client sends it."""

import math

from server.engines.fake import FakeEngine, shown_responses
from tests.api.conftest import as_python_json, running_app

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


# ---- labels as reference answers, and the policy's chat markup --------------------------------------


async def test_labels_are_reference_answers_unless_the_server_ignores_them():
    body = {"query": [PROMPT_A + "Blue.<|im_end|>"], "prompts": [PROMPT_A], "labels": ["Any colour, e.g. blue."]}
    used, ignored = FakeEngine(), FakeEngine()
    async with running_app(used, k=1) as client:
        assert (await client.post("/get_reward", json=body)).status_code == 200
    async with running_app(ignored, k=1, openrlhf_labels="ignore") as client:
        assert (await client.post("/get_reward", json=body)).status_code == 200
    assert "#### Reference Answer ####\nAny colour, e.g. blue.\n\n#### Responses" in used.requests[0].prompt
    assert "Reference" not in ignored.requests[0].prompt
    # Without a label the prompt is the one a plain /v1/score item gets, byte for byte.
    plain = FakeEngine()
    async with running_app(plain, k=1) as client:
        await client.post("/v1/score", json={"query": "Name a colour.", "responses": ["Blue."], "k": 1})
    assert ignored.requests[0].prompt == plain.requests[0].prompt


async def test_rows_with_different_labels_are_judged_apart_and_blank_labels_mean_none():
    engine = FakeEngine()
    body = {
        "query": [PROMPT_A + "Blue.", PROMPT_A + "Red.", PROMPT_A + "Green.", PROMPT_A + "Grey."],
        "prompts": [PROMPT_A] * 4,
        "labels": ["blue", "red", "", None],
    }
    async with running_app(engine, k=1, group_window_s=0) as client:
        r = await client.post("/get_reward", json=body)
    assert r.json()["extra_logs"]["grm_group_size"] == [1.0, 1.0, 2.0, 2.0]
    references = sorted(req.prompt.count("#### Reference Answer ####") for req in engine.requests)
    assert references == [0, 1, 1]


async def test_bad_labels_are_400():
    async with running_app(FakeEngine()) as client:
        short = await client.post("/get_reward", json={**OPENRLHF_REQUEST, "labels": ["a"]})
        nested = await client.post("/get_reward", json={**OPENRLHF_REQUEST, "labels": [{"x": 1}, "", ""]})
        number = await client.post("/get_reward", json={**OPENRLHF_REQUEST, "labels": [4, 4.5, None]})
    assert short.status_code == 400 and "3 queries but 1 labels" in short.json()["error"]["message"]
    assert (
        nested.status_code == 400
        and "label 0: a label must be a string or a number" in nested.json()["error"]["message"]
    )
    assert number.status_code == 200


async def test_a_nan_label_is_no_reference_and_a_float_label_reads_as_the_client_writes_it():
    # Python's json (httpx, requests, aiohttp) writes pandas' missing value as the bare token NaN.
    engine = FakeEngine()
    body = {**OPENRLHF_REQUEST, "labels": [math.nan, 3.0, math.inf]}
    async with running_app(engine, k=1, group_window_s=0) as client:
        infinite = await client.post("/get_reward", **as_python_json(body))
        r = await client.post("/get_reward", **as_python_json({**body, "labels": [math.nan, 3.0, None]}))
    assert infinite.status_code == 400 and "label 2: a label must be a finite number" in infinite.text
    assert r.status_code == 200, r.text
    prompts = [req.prompt for req in engine.requests]
    # Three items (A without a reference, A with "3", B without): only one prompt has a reference, "3".
    assert sorted(p.count("#### Reference Answer ####\n3\n") for p in prompts) == [0, 0, 1]
    assert sum(p.count("#### Reference Answer ####") for p in prompts) == 1


async def test_chat_markup_none_passes_the_policy_text_through():
    engine = FakeEngine()
    body = {"query": [PROMPT_A + "Blue.<|im_end|>"], "prompts": [PROMPT_A]}
    async with running_app(engine, k=1, chat_markup="none") as client:
        await client.post("/get_reward", json=body)
    assert PROMPT_A in engine.requests[0].prompt and "Blue.<|im_end|>" in engine.requests[0].prompt


async def test_get_reward_strips_only_the_policy_templates_own_end_token():
    engine = FakeEngine()
    body = {"query": [PROMPT_A + "Use <s>old</s><|im_end|>"], "prompts": [PROMPT_A]}
    async with running_app(engine, k=1) as client:
        assert (await client.post("/get_reward", json=body)).status_code == 200
    assert shown_responses(engine.requests[0].prompt) == ["Use <s>old</s>"]


# DeepSeek's markers, written with fullwidth bars (U+FF5C) and a lower one-eighth block (U+2581).
DS_USER, DS_ASSISTANT = "<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>"
DS_EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"


async def test_get_reward_judges_a_plain_prompt_that_mentions_markers_as_the_users_own_words():
    prompt = f"Explain what {DS_USER}hi{DS_ASSISTANT} means"
    engine = FakeEngine()
    body = {"query": [f"{prompt}They mark turns.{DS_EOS}"], "prompts": [prompt]}
    async with running_app(engine, k=1) as client:
        assert (await client.post("/get_reward", json=body)).status_code == 200
    assert prompt in engine.requests[0].prompt
    assert shown_responses(engine.requests[0].prompt) == [f"They mark turns.{DS_EOS}"]
