"""grm-client's async, AReaL and NeMo Gym adapters against a recording MockTransport."""

from __future__ import annotations

import asyncio
import inspect
import json
import pickle

import httpx
import pydantic
import pytest

import grm_client as g
from grm_client.integrations import _common, areal, nemo_gym, verl
from grm_client.integrations.trl import grm_async_reward_func


def answer(request: httpx.Request) -> httpx.Response:
    """``/v1/score`` (one item or a batch): mean score = min(10, len(response)); ``/v1/reward``: score = len/100."""
    body = json.loads(request.content)
    if request.url.path == "/v1/reward":
        if body["response"] == "unparsed":
            return httpx.Response(200, json={"reward": 0.0, "score": 0.0, "unscored": True, "group_size": 1})
        score = min(1.0, len(body["response"]) / 100)
        return httpx.Response(200, json={"reward": 9 * score + 1, "score": score, "unscored": False, "group_size": 2})
    if "items" in body:
        return httpx.Response(200, json={"model": "m", "template": "t", "items": [judged(i) for i in body["items"]]})
    return httpx.Response(200, json={"model": "m", "template": "t", **judged(body)})


def judged(item: dict) -> dict:
    responses = []
    for i, text in enumerate(item["responses"]):
        mean = None if text == "unparsed" else float(min(10, len(text)))
        score = None if mean is None else 2 * mean
        responses.append(
            {"index": i, "score": score, "mean_score": mean, "votes": 2, "valid_samples": 2, "status": "ok"}
        )
    return {"responses": responses, "k": 2, "k_meta": None, "valid_samples": 2, "total_samples": 2, "usage": {}}


def recording(seen: list[dict]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/info":  # the integrations ask once whether the judge takes references
            return httpx.Response(200, json={"judge": {"name": "deepseek-grm", "takes_reference": True}})
        seen.append({"path": request.url.path, **json.loads(request.content)})
        return answer(request)

    return httpx.MockTransport(handler)


def async_client(seen: list[dict]) -> g.AsyncGRMClient:
    return g.AsyncGRMClient(transport=recording(seen))


# --- TRL -------------------------------------------------------------------------------------------


def test_trl_async_function_sends_each_completion_in_its_own_call_and_keeps_trls_order():
    seen: list[dict] = []
    func = grm_async_reward_func(client=async_client(seen), reward="mean", reference_column="answer", k=2)
    assert inspect.iscoroutinefunction(func) and func.__name__ == "grm"
    prompts = ["p1", "p2", "p1", "p2"]
    out = asyncio.run(func(prompts=prompts, completions=["a", "bbbb", "ccc", "dd"], answer=["x", "y", "x", "y"]))
    assert out == [1.0, 4.0, 3.0, 2.0]
    assert sorted((c["query"], c["responses"][0], c["reference"], c["k"]) for c in seen) == [
        ("p1", "a", "x", 2),
        ("p1", "ccc", "x", 2),
        ("p2", "bb" * 2, "y", 2),
        ("p2", "dd", "y", 2),
    ]


def test_trl_async_missing_rows_and_bad_batches():
    seen: list[dict] = []
    func = grm_async_reward_func(client=async_client(seen), missing=-1.0)
    assert asyncio.run(func(prompts=["p", "p"], completions=["unparsed", "abcdefghij"])) == [-1.0, 1.0]
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        asyncio.run(func(prompts=["p", "p"], completions=["a"]))
    with pytest.raises(ValueError, match=r"unknown GRM option.*'kk'"):
        grm_async_reward_func(kk=3)


# --- verl ------------------------------------------------------------------------------------------

LOOP_KWARGS = {"reward_router_address": "127.0.0.1:9999", "reward_model_tokenizer": None}


def test_verl_compute_score_accepts_the_reward_loops_own_keyword_arguments(monkeypatch):
    """The call from the issue: it raised TypeError in build_item before."""
    seen: list[dict] = []
    monkeypatch.setattr(verl, "shared_client", lambda base_url, api_key=None: g.GRMClient(transport=recording(seen)))
    value = verl.compute_score("gsm8k", "72", "72", {"question": "q?"}, reward="mean", k=2, **LOOP_KWARGS)
    assert value == 2.0
    (item,) = seen[-1]["items"]
    assert item["reference"] == "72" and item["k"] == 2 and "reward_router_address" not in item
    batch = verl.compute_score_batch(["s"], ["abc"], [None], [{"question": "x"}], reward="mean", **LOOP_KWARGS)
    assert batch == [3.0]
    with pytest.raises(ValueError, match=r"unknown GRM option.*'temprature'"):
        verl.compute_score("gsm8k", "72", "72", {"question": "q?"}, temprature=0.5)


def test_verl_async_functions_are_coroutines_and_send_one_row_per_call(monkeypatch):
    seen: list[dict] = []
    client = async_client(seen)
    monkeypatch.setattr(verl, "loop_client", lambda base_url, api_key=None: client)
    assert inspect.iscoroutinefunction(verl.compute_score_async)
    assert inspect.iscoroutinefunction(verl.compute_score_batch_async)
    messages = [{"role": "user", "content": "q?"}]
    one = verl.compute_score_async("s", "abcd", 7, {"messages": messages}, reward="mean", **LOOP_KWARGS)
    assert asyncio.run(one) == 4.0
    assert seen[-1]["messages"] == messages and seen[-1]["reference"] == "7"
    batch = verl.compute_score_batch_async(
        ["s"] * 3, ["a", "bb", "ccc"], ["1", "2", "1"], [{"question": "x"}] * 3, reward="raw", use_ground_truth=False
    )
    assert asyncio.run(batch) == [2.0, 4.0, 6.0]
    assert [c["responses"] for c in seen[-3:]] and all("reference" not in c for c in seen[-3:])


# --- AReaL -----------------------------------------------------------------------------------------

CHATML = "<|im_start|>user\nWhat is 6 * 12?<|im_end|>\n<|im_start|>assistant\n"


def test_areal_reward_fn_posts_the_decoded_strings_to_v1_reward_with_the_rows_reference(monkeypatch):
    seen: list[dict] = []
    monkeypatch.setattr(areal, "shared_client", lambda base_url, api_key=None: g.GRMClient(transport=recording(seen)))
    fn = areal.GRMRewardFn("http://grm:8000")
    assert fn(CHATML, "72.<|im_end|>", [1, 2], [3], answer=72, messages=[]) == pytest.approx(0.13)
    assert seen[-1] == {"path": "/v1/reward", "prompt": CHATML, "response": "72.<|im_end|>", "label": "72"}
    assert areal.GRMRewardFn(reference_key=None)(CHATML, "72", [], [], answer="72") == pytest.approx(0.02)
    assert seen[-1]["label"] is None
    assert areal.GRMRewardFn(reward="server")(CHATML, "72", [], [], answer=None) == pytest.approx(1.18)
    assert seen[-1]["label"] is None  # a null answer is no reference
    assert areal.GRMRewardFn(missing=-1.0)(CHATML, "unparsed", [], [], answer="72") == -1.0


def test_areal_reward_fn_refuses_a_row_without_its_reference_field(monkeypatch):
    """A dataset that names its answer otherwise must not be judged without it, silently."""
    seen: list[dict] = []
    monkeypatch.setattr(areal, "shared_client", lambda base_url, api_key=None: g.GRMClient(transport=recording(seen)))
    with pytest.raises(ValueError, match=r"no dataset field 'answer'.*fields: messages, solution"):
        areal.GRMRewardFn()(CHATML, "72", [], [], solution="72", messages=[])
    assert seen == []
    with pytest.raises(ValueError, match="'unit' or 'server'"):
        areal.GRMRewardFn(reward="raw")  # type: ignore[arg-type]


def test_areal_reward_fn_pickles_for_the_process_pool_and_reads_the_environment(monkeypatch):
    fn = areal.GRMRewardFn("http://grm:8000", reference_key="solution", missing=-1.0)
    assert pickle.loads(pickle.dumps(fn)) == fn
    assert pickle.loads(pickle.dumps(areal.grm_reward_fn)) is areal.grm_reward_fn
    seen: list[dict] = []
    monkeypatch.setattr(areal, "shared_client", lambda base_url, api_key=None: g.GRMClient(transport=recording(seen)))
    monkeypatch.setenv("GRM_REFERENCE_KEY", "solution")
    areal.grm_reward_fn(CHATML, "x", [], [], solution="9", answer="8")
    assert seen[-1]["label"] == "9"
    monkeypatch.setenv("GRM_REFERENCE_KEY", "")
    areal.grm_reward_fn(CHATML, "x", [], [], solution="9")
    assert seen[-1]["label"] is None


# --- NeMo Gym --------------------------------------------------------------------------------------


def verify_body(**changes: object) -> dict:
    body = {
        "responses_create_params": {
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": [{"type": "input_text", "text": "Hi."}]},
                {"role": "assistant", "content": "Hello!"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
                {"role": "user", "content": "Capital of France?", "type": "message"},
            ],
        },
        "response": {
            "output": [
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Draft"}]},
                {"type": "function_call", "name": "search", "arguments": "{}"},
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Paris"}, {"type": "output_text", "text": "is it."}],
                },
            ]
        },
        "expected_answer": "Paris",
        "metadata": {"source": "t"},
    }
    return {**body, **changes}


def test_nemo_gym_reads_the_conversation_the_final_answer_and_the_reference():
    body = verify_body()
    assert nemo_gym.conversation(body) == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert nemo_gym.final_answer(body) == "Paris\nis it."
    assert nemo_gym.reference(body, "expected_answer") == "Paris"
    assert (
        nemo_gym.reference(verify_body(expected_answer=None, metadata={"expected_answer": 3}), "expected_answer") == "3"
    )
    assert nemo_gym.reference(body, None) is None
    blank_top = verify_body(expected_answer="", metadata={"expected_answer": "Paris"})
    assert nemo_gym.reference(blank_top, "expected_answer") == "Paris"
    with pytest.raises(ValueError, match="no 'answer' field"):
        nemo_gym.reference(body, "answer")
    refusal = verify_body(
        response={
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}]
        }
    )
    assert nemo_gym.final_answer(refusal) == "No."
    image_only = [{"role": "user", "content": [{"type": "input_image", "image_url": "data:..."}]}]
    with pytest.raises(ValueError, match="holds no text"):
        nemo_gym.conversation(verify_body(responses_create_params={"input": image_only}))
    with pytest.raises(ValueError, match="no user turn"):
        nemo_gym.conversation(verify_body(responses_create_params={"input": [{"role": "system", "content": "x"}]}))
    with pytest.raises(ValueError, match="dict or a pydantic model"):
        nemo_gym.conversation(["not", "a", "body"])


def test_nemo_gym_verify_echoes_the_request_with_its_reward():
    seen: list[dict] = []
    verifier = nemo_gym.GRMVerifier(client=async_client(seen), reward="mean", k=4)
    answered = asyncio.run(verifier.verify(verify_body()))
    assert answered == {**verify_body(), "reward": 10.0}  # min(10, 12 characters)
    (call,) = seen
    assert call["responses"] == ["Paris\nis it."] and call["reference"] == "Paris" and call["k"] == 4
    assert call["messages"][-1] == {"role": "user", "content": "Capital of France?"}


def test_nemo_gym_rollout_without_an_answer_gets_missing_without_a_call():
    seen: list[dict] = []
    verifier = nemo_gym.GRMVerifier(client=async_client(seen), missing=-1.0)
    no_answer = verify_body(response={"output": [{"type": "function_call", "name": "f", "arguments": "{}"}]})
    assert asyncio.run(verifier.reward(no_answer)) == -1.0
    assert seen == []


def test_nemo_gym_accepts_pydantic_models():
    class Body(pydantic.BaseModel):
        responses_create_params: dict
        response: dict
        expected_answer: str

    body = Body(**{k: verify_body()[k] for k in ("responses_create_params", "response", "expected_answer")})
    assert nemo_gym.final_answer(body) == "Paris\nis it."


def test_verl_reads_the_prompt_verls_agent_loop_passes_and_refuses_what_is_not_a_prompt(monkeypatch):
    import numpy as np

    seen: list[dict] = []
    monkeypatch.setattr(verl, "shared_client", lambda base_url, api_key=None: g.GRMClient(transport=recording(seen)))
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "2+2?"}]},
    ]
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    for raw in (turns, np.array(turns, dtype=object)):
        verl.compute_score("gsm8k", "4", 4, {"raw_prompt": raw, "index": 0, "question": None})
        assert seen[-1]["items"][0]["messages"] == plain
    verl.compute_score("gsm8k", "4", 4, {"prompt": turns})
    assert seen[-1]["items"][0]["messages"] == plain  # turns, never their repr
    for info, message in [
        ({"question": None}, "agent loop passes it as extra_info\\['raw_prompt'\\]"),
        ({"question": "  "}, "extra_info\\['question'\\] is blank"),
        ({"prompt": 42}, "must be text or a list of chat turns, got int"),
        ({"raw_prompt": [{"role": "assistant", "content": "hi"}]}, "must end with the user's turn"),
    ]:
        with pytest.raises(ValueError, match=message):
            verl.compute_score("gsm8k", "4", 4, info)


def test_reference_answers_from_dataset_values():
    import math

    import numpy as np

    assert [_common.as_reference(v) for v in (3.0, np.int64(4), np.float64(2.5), 7, "x", " ", None)] == [
        "3",
        "4",
        "2.5",
        "7",
        "x",
        None,
        None,
    ]
    assert _common.as_reference(math.nan) is None  # pandas' missing value, never the answer "nan"
    for bad in (True, np.bool_(False), [1], {"a": 1}):
        with pytest.raises(ValueError, match="must be a string or a number"):
            _common.as_reference(bad)
    with pytest.raises(ValueError, match="must be a finite number"):
        _common.as_reference(-math.inf)


def test_calls_that_can_share_a_grm_prompt_carry_one_affinity_header_for_load_balancers():
    seen_headers: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_headers.append({"path": request.url.path, **dict(request.headers)})
        return answer(request)

    grm = g.GRMClient(transport=httpx.MockTransport(handler))
    grm.score("Capital of France?", ["Paris."], reference="Paris", k=4)
    grm.score("Capital of France?", ["Lyon."], reference="Paris", k=4)  # another rollout of the prompt
    grm.score("Capital of France?", ["Lyon."], reference="Paris", k=8)  # other options: another prompt
    grm.reward(CHATML, "72", label="72")
    grm.reward(CHATML, "71", label="72")
    affinity = [h["x-grm-affinity"] for h in seen_headers]
    assert affinity[0] == affinity[1] != affinity[2]
    assert affinity[3] == affinity[4] != affinity[0]
    assert len({h["idempotency-key"] for h in seen_headers}) == 5  # each call still its own job
