"""TRL and verl reward functions: grouping by prompt, order of rewards, scales (MockTransport)."""

import json

import httpx
import pytest

import grm_client as g
from grm_client.integrations import verl
from grm_client.integrations.trl import grm_reward_func


def judge_by_length(request):
    """Answers /v1/score batches: mean score = min(10, len(response)), every item k=2."""
    items = json.loads(request.content)["items"]
    out = []
    for it in items:
        responses = []
        for i, text in enumerate(it["responses"]):
            mean = float(min(10, len(text)))
            responses.append(
                {"index": i, "score": 2 * mean, "mean_score": mean, "votes": 2, "valid_samples": 2, "status": "ok"}
            )
        out.append(
            {
                "responses": responses,
                "k": 2,
                "k_meta": None,
                "valid_samples": 2,
                "total_samples": 2,
                "usage": {},
                "timings": {},
            }
        )
    return httpx.Response(200, json={"model": "m", "template": "t", "items": out})


def recording_client():
    seen = []

    def handler(request):
        if request.url.path == "/v1/info":  # the integrations ask once whether the judge takes references
            return httpx.Response(200, json={"judge": {"name": "deepseek-grm", "takes_reference": True}})
        seen.append(json.loads(request.content))
        return judge_by_length(request)

    return g.GRMClient(transport=httpx.MockTransport(handler)), seen


def test_trl_reward_groups_completions_of_a_prompt_and_keeps_trl_order():
    client, seen = recording_client()
    reward = grm_reward_func(client=client, reward="mean", k=2)
    prompts = ["p1", "p2", "p1", "p2"]
    completions = ["a", "bbbb", "ccc", "dd"]
    assert reward(prompts=prompts, completions=completions) == [1.0, 4.0, 3.0, 2.0]
    (call,) = seen
    assert [it["responses"] for it in call["items"]] == [["a", "ccc"], ["bbbb", "dd"]]
    assert all(it["k"] == 2 for it in call["items"])
    assert reward.__name__ == "grm"


def test_trl_conversational_prompts_and_completions():
    client, seen = recording_client()
    reward = grm_reward_func(client=client, reward="unit")
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    completions = [[{"role": "assistant", "content": "hello"}], [{"role": "assistant", "content": "h"}]]
    assert reward(prompts=[prompt, prompt], completions=completions) == [pytest.approx(4 / 9), 0.0]
    assert seen[0]["items"][0]["messages"] == prompt


def test_trl_rejects_mismatched_lengths():
    client, _ = recording_client()
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        grm_reward_func(client=client)(prompts=["a", "b"], completions=["x"])


def test_verl_compute_score_and_batch(monkeypatch):
    client, seen = recording_client()
    monkeypatch.setattr(verl, "shared_client", lambda base_url, api_key=None: client)
    one = verl.compute_score("src", "abcde", None, {"question": "q?"}, reward="mean")
    assert one == 5.0 and seen[-1]["items"][0]["query"] == "q?"
    batch = verl.compute_score_batch(
        ["s"] * 3,
        ["a", "bb", "ccc"],
        [None] * 3,
        [{"question": "x"}, {"question": "y"}, {"question": "x"}],
        reward="raw",
    )
    assert batch == [2.0, 4.0, 6.0]
    assert [it["responses"] for it in seen[-1]["items"]] == [["a", "ccc"], ["bb"]]
    with pytest.raises(ValueError, match="extra_info"):
        verl.compute_score("src", "x", None, {})


def test_trl_reference_column_sends_each_rows_reference_and_splits_groups_by_it():
    client, seen = recording_client()
    reward = grm_reward_func(client=client, reward="mean", reference_column="answer")
    out = reward(prompts=["p", "p", "p"], completions=["a", "bb", "ccc"], answer=["4", "4", 5])
    assert out == [1.0, 2.0, 3.0]
    items = seen[0]["items"]
    assert [(it["responses"], it["reference"]) for it in items] == [(["a", "bb"], "4"), (["ccc"], "5")]
    with pytest.raises(ValueError, match=r"no dataset column 'solution'.*columns: answer"):
        grm_reward_func(client=client, reference_column="solution")(prompts=["p"], completions=["a"], answer=["4"])
    with pytest.raises(ValueError, match="must be a string or a number"):
        reward(prompts=["p"], completions=["a"], answer=[["4", "5"]])


def test_trl_without_a_reference_column_sends_no_reference():
    client, seen = recording_client()
    grm_reward_func(client=client)(prompts=["p"], completions=["a"], answer=["4"])
    assert "reference" not in seen[0]["items"][0]


def test_verl_ground_truth_is_the_reference_unless_turned_off(monkeypatch):
    client, seen = recording_client()
    monkeypatch.setattr(verl, "shared_client", lambda base_url, api_key=None: client)
    verl.compute_score("gsm8k", "72", "72", {"question": "q?"})
    assert seen[-1]["items"][0]["reference"] == "72"
    verl.compute_score("gsm8k", "72", "72", {"question": "q?"}, use_ground_truth=False)
    assert "reference" not in seen[-1]["items"][0]
    verl.compute_score_batch(["s"] * 3, ["a", "b", "c"], ["1", "2", "1"], [{"question": "x"}] * 3)
    assert [(it["responses"], it["reference"]) for it in seen[-1]["items"]] == [(["a", "c"], "1"), (["b"], "2")]
