"""Each RL framework's own reward-calling code against the live server (vLLM, the embedded GRM).

Installed without their GPU stacks (``make install``): verl 0.9.1 (its reward loop's naive reward
manager, loading grm-client's function through verl's own config and loader), AReaL 1.0.4 (the
documented workflow built as its single controller ships it, its reward step through
``AsyncRewardWrapper``'s process pool). slime is not on the package index and NeMo Gym's releases need
Python >= 3.12: their calls are reproduced here exactly, as their sources make them (slime's
``remote_rm``; NeMo Gym's agent posting a rollout to the documented resources server's ``/verify``,
served the way ``SimpleResourcesServer`` wires it).
TRL's ``GRPOTrainer`` with the async reward function is in ``test_grpo_e2e.py``, OpenRLHF's executor
in ``test_openrlhf_e2e.py``.

Every test checks what the GRM saw in the server's debug log: plain turns (no chat markup), the
reference when one was given, and every rollout; and that the rollouts of one prompt shared GRM
prompts (grouping across calls).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from server.config import Settings
from server.engines.model_files import ensure_embedded_model
from tests.launcher import RunningServer
from tests.slime_client import remote_rm, slime_session

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France? Answer in one word."
REFERENCE = "Paris"
ANSWERS = ["Paris.", "Lyon.", "It is Paris.", "Marseille."]
GRM_OPTIONS = {"k": 2, "max_tokens": 96}  # where the adapter takes per-request options: quick on CPU


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ensure_embedded_model(Settings().cache_dir)), local_files_only=True)


def chatml_prompt(tok) -> str:
    text = tok.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n")  # SmolLM2's template adds a default system turn
    return text


def grm_prompts_since(server: RunningServer, before: int) -> list[str]:
    return [r["prompt"] for r in server.records("GRM prompt")[before:]]


def assert_grm_saw_plain_turns(prompts: list[str], answers: list[str], reference: str | None = REFERENCE) -> None:
    assert prompts, "the session server logs GRM prompts at DEBUG"
    for text in prompts:
        assert "<|im_start|>" not in text and "<|im_end|>" not in text, text
        assert QUESTION in text
        if reference is not None:
            assert f"#### Reference Answer ####\n{reference}\n" in text
    shown = {a for text in prompts for a in answers if f"\n{a}\n[The End of Response" in text}
    assert shown == set(answers)  # every rollout was judged, without its end token
    assert any(sum(f"\n{a}\n[The End of Response" in text for a in answers) > 1 for text in prompts), (
        "no GRM prompt judged two rollouts together: the concurrent calls were not grouped"
    )


# --- slime -----------------------------------------------------------------------------------------


def test_slime_remote_rm_with_reward_key(grm_server):
    tok = tokenizer()
    prompt = chatml_prompt(tok)
    # --rm-type remote_rm --rm-url http://HOST:PORT/v1/reward --reward-key reward (docs/trainers.md)
    args = SimpleNamespace(rm_url=f"{grm_server.url}/v1/reward", reward_key="reward")
    # slime's sample.response is the rollout's decoded text; the policy's end token may close it.
    samples = [SimpleNamespace(prompt=prompt, response=a + "<|im_end|>", label=REFERENCE) for a in ANSWERS]
    before = len(grm_server.records("GRM prompt"))

    async def rollouts():
        async with slime_session() as session:
            payloads = [{"prompt": s.prompt, "response": s.response, "label": s.label} for s in samples]
            return await asyncio.gather(*(remote_rm(session, args.rm_url, p) for p in payloads))

    rewards = asyncio.run(rollouts())
    # slime's Sample.get_reward_value: sample.reward[args.reward_key]
    values = [r[args.reward_key] for r in rewards]
    assert all(0.0 <= v <= 1.0 for v in values) and not any(r["unscored"] for r in rewards), rewards
    assert max(r["group_size"] for r in rewards) > 1
    assert_grm_saw_plain_turns(grm_prompts_since(grm_server, before), ANSWERS)


# --- verl ------------------------------------------------------------------------------------------


def verl_config(function: str, url: str):
    """verl's own trainer config (its Hydra schema) with docs/trainers.md's overrides, pointed here."""
    from tests.trainer_docs import verl_config, verl_overrides

    return verl_config(verl_overrides(values={"name": function, "base_url": url}, extra={"k": 2, "max_tokens": 96}))


def verl_rows(tok, answers: list[str]):
    """A batch as verl's reward loop holds it after its agent loop: left-padded prompts, right-padded
    responses, the dataset's data_source, reward_model.ground_truth and extra_info, and the agent
    loop's extra fields (the chat turns as ``raw_prompt``)."""
    import numpy as np
    import torch
    from verl import DataProto

    prompt_ids = tok(chatml_prompt(tok), add_special_tokens=False)["input_ids"]
    width = max(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers) + 2
    rows = []
    for answer in answers:
        ids = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        response = torch.tensor(ids + [tok.pad_token_id or 0] * (width - len(ids)))
        mask = torch.tensor([1] * len(prompt_ids) + [1] * len(ids) + [0] * (width - len(ids)))
        rows.append(
            DataProto.from_dict(
                tensors={
                    "prompts": torch.tensor([prompt_ids]),
                    "responses": response[None],
                    "attention_mask": mask[None],
                },
                non_tensors={
                    "data_source": np.array(["geo_qa"], dtype=object),
                    "reward_model": np.array([{"ground_truth": REFERENCE, "style": "model"}], dtype=object),
                    "extra_info": np.array([{"index": 0, "split": "train"}], dtype=object),
                    # verl's agent loop adds the dataset's chat turns here; the manager merges them into extra_info
                    "tool_extra_fields": np.array([{"raw_prompt": [{"role": "user", "content": QUESTION}]}]),
                },
            )
        )
    return rows


@pytest.mark.parametrize("function", ["compute_score_async", "compute_score"])
def test_verl_reward_loop_naive_manager_calls_grm_client(grm_server, function):
    """verl's NaiveRewardManager (reward loop) with the function its loader builds from the config:
    awaited when ``async def``, else run in its thread executor; with the loop's own extra keyword
    arguments (``reward_router_address``, ``reward_model_tokenizer``), as the reward loop passes them."""
    import inspect

    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    tok = tokenizer()
    config = verl_config(function, grm_server.url)
    compute_score = get_custom_reward_fn(config)
    assert inspect.iscoroutinefunction(compute_score) == (function == "compute_score_async")
    before = len(grm_server.records("GRM prompt"))

    async def score_rows():
        manager = NaiveRewardManager(
            config, tok, compute_score, reward_router_address="127.0.0.1:9999", reward_model_tokenizer=tok
        )
        assert manager.is_async_reward_score == (function == "compute_score_async")
        return await asyncio.gather(*(manager.run_single(row) for row in verl_rows(tok, ANSWERS)))

    results = asyncio.run(score_rows())
    scores = [r["reward_score"] for r in results]
    assert all(0.0 <= s <= 1.0 for s in scores), scores
    assert_grm_saw_plain_turns(grm_prompts_since(grm_server, before), ANSWERS)


# --- AReaL -----------------------------------------------------------------------------------------


def test_areal_workflow_as_the_single_controller_ships_it_computes_rewards_through_the_adapter(grm_server):
    """docs/trainers.md's AReaL lines (run as written, the URL pointed here) name a workflow class; a
    rollout worker builds it from what AReaL's single controller sends (tests/areal_single_controller.py),
    then its own ``_compute_rewards``: it decodes the rollout's tokens (end token kept), passes the
    decoded prompt and the dataset row, and awaits ``AsyncRewardWrapper``'s process pool."""
    from areal.api.io_struct import ModelResponse

    from tests.areal_single_controller import built_on_a_worker, documented_train_call

    tok = tokenizer()
    task_data = {"messages": [{"role": "user", "content": QUESTION}], "answer": REFERENCE}
    # missing=-1.0 so that an unscored rollout fails the test instead of passing as a 0
    train = documented_train_call(
        grm_server.url, tok.name_or_path, {'reference_key="answer",': 'reference_key="answer", missing=-1.0,'}
    )
    workflow = built_on_a_worker(train["workflow"], train["workflow_kwargs"], task_data)
    assert workflow.async_reward_fn.timeout_seconds == 600  # not AReaL's 15 s default
    input_ids = tok(chatml_prompt(tok), add_special_tokens=False)["input_ids"]
    prompt_str = tok.decode(input_ids)  # as RLVRWorkflow.arun_episode does
    end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")
    before = len(grm_server.records("GRM prompt"))

    async def rollouts():
        calls = []
        for answer in ANSWERS:
            resp = ModelResponse(
                input_tokens=input_ids, output_tokens=tok(answer, add_special_tokens=False)["input_ids"] + [end_of_turn]
            )
            calls.append(workflow._compute_rewards(resp, prompt_str, task_data))
        return await asyncio.gather(*calls)

    rewards = asyncio.run(rollouts())
    assert all(0.0 <= r <= 1.0 for r in rewards), rewards  # -1.0 would be an unscored rollout
    assert_grm_saw_plain_turns(grm_prompts_since(grm_server, before), ANSWERS)


# --- NeMo Gym --------------------------------------------------------------------------------------


def nemo_gym_rollout(answer: str) -> dict:
    """A verify request as NeMo Gym's simple agent posts it: the task row (``responses_create_params``
    and its own fields) with the model's Responses-API output as ``response``."""
    return {
        "responses_create_params": {
            "input": [{"role": "user", "content": QUESTION, "type": "message"}],
            "tools": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
        },
        "response": {
            "id": "resp_1",
            "object": "response",
            "model": "policy",
            "status": "completed",
            "output": [
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": answer, "annotations": []}],
                }
            ],
        },
        "expected_answer": REFERENCE,
    }


def test_nemo_gym_resources_server_verify_through_the_adapter(grm_server, monkeypatch):
    """docs/trainers.md's resources server (run as written, the URL pointed here, k lowered for the CPU)
    with ``/verify`` wired as ``SimpleResourcesServer.setup_webserver`` wires it (tests/nemo_gym_standin.py:
    NeMo Gym's releases need Python >= 3.12); four rollouts of one task verified concurrently, as NeMo
    Gym's rollout collection does."""
    import httpx

    from tests import nemo_gym_standin
    from tests.trainer_docs import run_python_snippet

    nemo_gym_standin.install(monkeypatch)
    options = ", ".join(f"{k}={v}" for k, v in GRM_OPTIONS.items())
    namespace = run_python_snippet("nemo_gym", {'"http://grm:8000"': repr(grm_server.url), "k=4": options}, {})
    app = namespace["GRMResourcesServer"]().setup_webserver()
    before = len(grm_server.records("GRM prompt"))

    async def collect():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rs") as agent:
            replies = await asyncio.gather(*(agent.post("/verify", json=nemo_gym_rollout(a)) for a in ANSWERS))
        return [r.json() for r in replies]

    results = asyncio.run(collect())
    assert all(r["expected_answer"] == REFERENCE and 0.0 <= r["reward"] <= 1.0 for r in results), results
    assert_grm_saw_plain_turns(grm_prompts_since(grm_server, before), ANSWERS)
