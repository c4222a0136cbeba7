"""Every grm-client trainer adapter reaches a grm-serve that wants an API key: given as ``api_key`` or
as ``$GRM_API_KEY``; without one, the server's 401 reaches the trainer as UnauthorizedError.

One fake-engine server started with ``GRM_API_KEYS``. AReaL's workflow, which builds its reward
function from the same arguments, is driven through AReaL's own code in
tests/clients/test_areal_workflow.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

import grm_client as g
from grm_client.integrations import nemo_gym, verl
from grm_client.integrations.areal import GRMRewardFn
from grm_client.integrations.trl import grm_async_reward_func, grm_reward_func
from tests.launcher import LaunchError, launch

KEY = "trainer-key"
QUESTION = "What is the capital of France?"
MESSAGES = [{"role": "user", "content": QUESTION}]
INFO = {"messages": MESSAGES}  # verl's extra_info
ANSWER = "Paris is the capital of France."
REWARD = (4 - 1) / 9  # the fake judge votes min(10, 1 + len // 10); unit scale
CHATML = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("keys") / "server.log"
    try:
        with launch(["--engine", "fake"], log=log, start_timeout_s=60, env={"GRM_API_KEYS": KEY}) as srv:
            yield srv.url
    except LaunchError as exc:
        pytest.fail(str(exc))


# Each adapter called once, the way its framework calls it; ``key`` is its api_key argument (None: none).


def verl_sync(url: str, key: str | None) -> float:
    return verl.compute_score("geo", ANSWER, "Paris", INFO, base_url=url, api_key=key)


def verl_async(url: str, key: str | None) -> float:
    return asyncio.run(verl.compute_score_async("geo", ANSWER, "Paris", INFO, base_url=url, api_key=key))


def verl_batch(url: str, key: str | None) -> float:
    (value,) = verl.compute_score_batch(["geo"], [ANSWER], ["Paris"], [INFO], base_url=url, api_key=key)
    return value


def verl_batch_async(url: str, key: str | None) -> float:
    call = verl.compute_score_batch_async(["geo"], [ANSWER], ["Paris"], [INFO], base_url=url, api_key=key)
    (value,) = asyncio.run(call)
    return value


def trl_sync(url: str, key: str | None) -> float:
    (value,) = grm_reward_func(url, api_key=key)(prompts=[QUESTION], completions=[ANSWER])
    return value


def trl_async(url: str, key: str | None) -> float:
    (value,) = asyncio.run(grm_async_reward_func(url, api_key=key)(prompts=[QUESTION], completions=[ANSWER]))
    return value


def areal(url: str, key: str | None) -> float:
    return GRMRewardFn(url, api_key=key)(CHATML, ANSWER + "<|im_end|>", [1], [2], answer="Paris")


def nemo_gym_verify(url: str, key: str | None) -> float:
    body = {
        "responses_create_params": {"input": MESSAGES},
        "response": {"output": [{"type": "message", "role": "assistant", "content": ANSWER}]},
        "expected_answer": "Paris",
    }
    return asyncio.run(nemo_gym.GRMVerifier(url, api_key=key).reward(body))


ADAPTERS = [verl_sync, verl_async, verl_batch, verl_batch_async, trl_sync, trl_async, areal, nemo_gym_verify]


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda f: f.__name__)
def test_the_key_as_an_argument(server: str, adapter: Callable, monkeypatch) -> None:
    monkeypatch.delenv("GRM_API_KEY", raising=False)
    assert adapter(server, KEY) == pytest.approx(REWARD)


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda f: f.__name__)
def test_the_key_from_the_environment(server: str, adapter: Callable, monkeypatch) -> None:
    monkeypatch.setenv("GRM_API_KEY", KEY)
    assert adapter(server, None) == pytest.approx(REWARD)


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda f: f.__name__)
def test_no_key_is_a_401_not_a_reward(server: str, adapter: Callable, monkeypatch) -> None:
    monkeypatch.delenv("GRM_API_KEY", raising=False)
    with pytest.raises(g.UnauthorizedError):
        adapter(server, None)


def test_a_key_beside_a_configured_client_is_refused() -> None:
    """It would go unused, and every call would be a 401."""
    for build in (
        lambda: grm_reward_func(client=g.GRMClient(), api_key=KEY),
        lambda: grm_async_reward_func(client=g.AsyncGRMClient(), api_key=KEY),
        lambda: nemo_gym.GRMVerifier(client=g.AsyncGRMClient(), api_key=KEY),
    ):
        with pytest.raises(ValueError, match="pass the API key to the client"):
            build()
