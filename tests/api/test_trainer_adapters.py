"""Every trainer route and adapter gives the reward ``/v1/score`` gives, from the GRM prompt ``/v1/score`` builds.

One fake-engine server (deterministic judge: a response's vote follows its length), grouping across
calls off and the dedup cache off, so each call builds its own GRM prompts and the server's debug log
shows them. For one conversation, response and reference, each way in (slime's and OpenRLHF's routes,
grm-client's TRL, verl, AReaL and NeMo Gym adapters) must produce the same GRM prompt as ``/v1/score``
(so no chat markup, the reference shown) and the same reward.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from grm_client.integrations import nemo_gym, verl
from grm_client.integrations.areal import GRMRewardFn
from grm_client.integrations.trl import grm_async_reward_func, grm_reward_func
from tests.launcher import LaunchError, RunningServer, launch

SYSTEM = "You are a geography tutor. Be brief."
QUESTION = "What is the capital of France?"
CONVERSATION = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
# What a ChatML policy (Qwen, SmolLM) saw and wrote, as OpenRLHF, slime and AReaL send it.
CHATML_PROMPT = (
    f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
)
REFERENCE = "Paris"
# The fake judge votes min(10, 1 + len // 10): three rewards apart.
ANSWERS = ["Paris.", "The capital of France is Paris.", "It is Paris, on the Seine, the largest city of France."]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("adapters") / "server.log"
    args = ["--engine", "fake", "--log-level", "debug", "--group-window-s", "0", "--idempotency-cache-size", "0"]
    try:
        with launch(args, log=log, start_timeout_s=60) as srv:
            yield RunningServer(srv.url, Path(log))
    except LaunchError as exc:
        pytest.fail(str(exc))


def grm_prompts_of(server: RunningServer, call: Callable[[], Any]) -> tuple[Any, list[str]]:
    """What ``call`` returns, and the GRM prompts the server built while it ran."""
    before = len(server.records("GRM prompt"))
    out = call()
    return out, [r["prompt"] for r in server.records("GRM prompt")[before:]]


def score_route(server: RunningServer, answer: str) -> tuple[float, list[str]]:
    """The reference: ``/v1/score`` on the plain conversation, the unit reward."""
    body = {"messages": CONVERSATION, "responses": [answer], "reference": REFERENCE}

    def call() -> float:
        response = httpx.post(f"{server.url}/v1/score", json=body, timeout=30)
        response.raise_for_status()
        return (response.json()["responses"][0]["mean_score"] - 1) / 9

    return grm_prompts_of(server, call)


def slime_string(url: str, answer: str) -> float:
    body = {"prompt": CHATML_PROMPT, "response": answer + "<|im_end|>", "label": REFERENCE}
    return httpx.post(f"{url}/v1/reward", json=body, timeout=30).json()["reward"]


def slime_messages(url: str, answer: str) -> float:
    body = {"prompt": CONVERSATION, "response": answer, "label": REFERENCE}
    return httpx.post(f"{url}/v1/reward", json=body, timeout=30).json()["reward"]


def openrlhf(url: str, answer: str) -> float:
    body = {"query": [CHATML_PROMPT + answer + "<|im_end|>"], "prompts": [CHATML_PROMPT], "labels": [REFERENCE]}
    return httpx.post(f"{url}/get_reward", json=body, timeout=30).json()["rewards"][0]


VERL_LOOP = {"reward_router_address": "127.0.0.1:9999", "reward_model_tokenizer": None}  # the reward loop's own


def verl_sync(url: str, answer: str) -> float:
    return verl.compute_score("geo", answer, REFERENCE, {"messages": CONVERSATION}, base_url=url, **VERL_LOOP)


def verl_async(url: str, answer: str) -> float:
    call = verl.compute_score_async("geo", answer, REFERENCE, {"messages": CONVERSATION}, base_url=url, **VERL_LOOP)
    return asyncio.run(call)


def verl_batch(url: str, answer: str) -> float:
    (value,) = verl.compute_score_batch(["geo"], [answer], [REFERENCE], [{"messages": CONVERSATION}], base_url=url)
    return value


def verl_batch_async(url: str, answer: str) -> float:
    batch = verl.compute_score_batch_async(["geo"], [answer], [REFERENCE], [{"messages": CONVERSATION}], base_url=url)
    (value,) = asyncio.run(batch)
    return value


TRL_BATCH = {
    "prompts": [CONVERSATION],
    "completion_ids": [[1, 2]],
    "answer": [REFERENCE],
    "trainer_state": None,
}


def trl_sync(url: str, answer: str) -> float:
    func = grm_reward_func(url, reference_column="answer")
    (value,) = func(completions=[[{"role": "assistant", "content": answer}]], **TRL_BATCH)
    return value


def trl_async(url: str, answer: str) -> float:
    func = grm_async_reward_func(url, reference_column="answer")
    (value,) = asyncio.run(func(completions=[[{"role": "assistant", "content": answer}]], **TRL_BATCH))
    return value


def areal(url: str, answer: str) -> float:
    # AReaL decodes with the special tokens kept: the ChatML prompt, and the rollout's end token.
    return GRMRewardFn(url)(CHATML_PROMPT, answer + "<|im_end|>", [1, 2], [3, 4], answer=REFERENCE, messages=[])


def nemo_gym_verify(url: str, answer: str) -> float:
    body = {
        "responses_create_params": {
            "instructions": SYSTEM,
            "input": [{"role": "user", "content": QUESTION, "type": "message"}],
        },
        "response": {
            "output": [
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "France... Paris."}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": answer}]},
            ]
        },
        "expected_answer": REFERENCE,
    }
    answered = asyncio.run(nemo_gym.GRMVerifier(url).verify(body))
    assert answered["expected_answer"] == REFERENCE  # the request is echoed, as NeMo Gym's answers do
    return answered["reward"]


WAYS_IN = [
    slime_string,
    slime_messages,
    openrlhf,
    verl_sync,
    verl_async,
    verl_batch,
    verl_batch_async,
    trl_sync,
    trl_async,
    areal,
    nemo_gym_verify,
]


@pytest.mark.parametrize("way_in", WAYS_IN, ids=lambda f: f.__name__)
def test_each_way_in_gives_score_routes_reward_from_the_same_grm_prompt(server: RunningServer, way_in) -> None:
    expected = [score_route(server, answer) for answer in ANSWERS]
    assert len({reward for reward, _ in expected}) == len(ANSWERS)  # the answers' rewards differ
    for answer, (reward, prompts) in zip(ANSWERS, expected, strict=True):
        assert prompts and all(f"#### Reference Answer ####\n{REFERENCE}\n" in p for p in prompts)
        assert all("<|im_" not in p for p in prompts)
        got, seen = grm_prompts_of(server, lambda a=answer: way_in(server.url, a))
        assert got == pytest.approx(reward), answer
        assert seen == prompts, f"{way_in.__name__} built another GRM prompt than /v1/score"
