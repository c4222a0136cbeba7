"""docs/trainers.md's AReaL lines through AReaL 1.0.4's single-controller path, to a judge slower than the
15 s AReaL's reward wrapper allows by default.

The documented training-script call runs as written (its URL pointed at the test's server); the
workflow it names is built the way a rollout worker builds it (tests/areal_single_controller.py). Its
episode then runs with a scripted policy, and its reward comes through ``AsyncRewardWrapper``'s process
pool from a real grm-serve (fake engine) whose generation takes longer than 15 s and which wants an
API key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.areal_single_controller import built_on_a_worker, documented_train_call, process_state_kept_from_areal
from tests.launcher import LaunchError, launch
from tests.tiny_models import byte_chatml_tokenizer

JUDGE_DELAY_S = 16.0  # AReaL 1.0.4's AsyncRewardWrapper gives up after 15 s per try by default
API_KEY = "areal-test-key"
QUESTION = "What is the capital of France?"
ANSWER = "Paris, the capital of France."  # the fake judge votes min(10, 1 + len // 10) = 3
DATA = {"messages": [{"role": "user", "content": QUESTION}], "answer": "Paris"}


@pytest.fixture(scope="module", autouse=True)
def _areals_process_state_undone() -> Iterator[None]:
    with process_state_kept_from_areal():
        yield


@pytest.fixture(scope="module")
def slow_judge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("areal") / "server.log"
    args = ["--engine", "fake", "--delay", str(JUDGE_DELAY_S)]
    try:
        with launch(args, log=log, start_timeout_s=60, env={"GRM_API_KEYS": API_KEY}) as srv:
            yield srv.url
    except LaunchError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(byte_chatml_tokenizer(tmp_path_factory.mktemp("policy")))


class ScriptedPolicy:
    """The inference engine's ``agenerate``: the policy answers ``ANSWER`` and its end token."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    async def agenerate(self, req: Any) -> Any:
        from areal.api.io_struct import ModelResponse

        output = self.tokenizer(ANSWER, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        n = len(output)
        return ModelResponse(req.input_ids, output, [0.0] * n, [0] * n, tokenizer=self.tokenizer)


def test_the_documented_workflow_reaches_a_worker_whole_and_outwaits_a_slow_judge(
    slow_judge, tokenizer_path, monkeypatch
):
    monkeypatch.setenv("GRM_API_KEY", API_KEY)  # where the run starts; the worker and its pool inherit it
    train = documented_train_call(slow_judge, tokenizer_path)
    workflow = built_on_a_worker(train["workflow"], train["workflow_kwargs"], DATA)
    assert workflow.async_reward_fn.timeout_seconds == 600

    started = time.monotonic()
    episode = asyncio.run(workflow.arun_episode(ScriptedPolicy(workflow.tokenizer), DATA))
    elapsed = time.monotonic() - started

    assert elapsed > 15  # the judge took longer than AReaL's default wrapper waits
    assert episode["rewards"].tolist() == pytest.approx([(3 - 1) / 9])  # the judge's vote, not AReaL's 0


def test_a_workflow_instance_reaches_a_worker_as_its_bare_class(tokenizer_path):
    """Why the docs name a workflow class: AReaL ships an instance as its class path, without the
    instance's arguments or the reward wrapper replaced on it (the docs' former recipe)."""
    from areal.api.cli_args import GenerationHyperparameters
    from areal.api.reward_api import AsyncRewardWrapper
    from areal.workflow.rlvr import RLVRWorkflow

    from grm_client.integrations.areal import GRMRewardFn

    gconfig = GenerationHyperparameters(max_new_tokens=16)
    instance = RLVRWorkflow(reward_fn=GRMRewardFn("http://grm:8000"), gconfig=gconfig, tokenizer=tokenizer_path)
    instance.async_reward_fn = AsyncRewardWrapper(instance.reward_fn, timeout_seconds=600, max_workers=4)
    with pytest.raises(TypeError, match="reward_fn"):
        built_on_a_worker(instance, None, DATA)
    kwargs = {"reward_fn": GRMRewardFn("http://grm:8000"), "gconfig": gconfig, "tokenizer": tokenizer_path}
    rebuilt = built_on_a_worker(instance, kwargs, DATA)
    assert rebuilt.async_reward_fn.timeout_seconds == 15


def test_the_workflow_takes_the_reward_functions_options_and_refuses_impossible_limits(tokenizer_path):
    from areal.api.cli_args import GenerationHyperparameters

    from grm_client.integrations.areal import GRMRewardFn
    from grm_client.integrations.areal_workflow import GRMRLVRWorkflow

    gconfig = GenerationHyperparameters(max_new_tokens=16)
    workflow = GRMRLVRWorkflow(
        gconfig, tokenizer_path, base_url="http://grm:8000", api_key="k", reference_key="solution", reward="server",
        missing=-1.0, reward_timeout_s=120, reward_max_workers=8, reward_max_retries=1,
    )  # fmt: skip
    assert workflow.reward_fn == GRMRewardFn("http://grm:8000", "solution", "server", -1.0, api_key="k")
    assert "'k'" not in repr(workflow.reward_fn)  # the key stays out of logs
    wrapper = workflow.async_reward_fn
    assert (wrapper.reward_fn, wrapper.timeout_seconds, wrapper.max_workers, wrapper.max_retries) == (
        workflow.reward_fn, 120, 8, 1
    )  # fmt: skip
    for bad in ({"reward_timeout_s": 0}, {"reward_max_workers": 0}, {"reward_max_retries": -1}):
        with pytest.raises(ValueError, match="reward_timeout_s must be > 0"):
            GRMRLVRWorkflow(gconfig, tokenizer_path, **bad)
    with pytest.raises(ValueError, match="'unit' or 'server'"):
        GRMRLVRWorkflow(gconfig, tokenizer_path, reward="raw")
