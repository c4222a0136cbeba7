"""docs/trainers.md's NeMo Gym resources server, run as written: served as ``SimpleResourcesServer`` wires
it, with a rollout posted to its ``/verify`` as NeMo Gym's agents post them.

Against NeMo Gym's own classes where NeMo Gym is importable, else against tests/nemo_gym_standin.py
(NeMo Gym's package-index releases need Python >= 3.12). The judge is a recording MockTransport; the
e2e suite serves the same lines against the live server (tests/e2e/test_trainers_e2e.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any
from unittest.mock import MagicMock

import httpx
import pytest

import grm_client as g
from grm_client.integrations import nemo_gym
from tests import nemo_gym_standin
from tests.clients.test_async_integrations import recording
from tests.trainer_docs import run_python_snippet

QUESTION = "What is the capital of France?"


def rollout(answer: str) -> dict[str, Any]:
    """A verify request as NeMo Gym's simple agent posts it: the task row (``responses_create_params``,
    the task's own ``expected_answer`` and ``metadata``) with the model's Responses-API output."""
    return {
        "responses_create_params": {"input": [{"role": "user", "content": QUESTION, "type": "message"}]},
        "response": {
            "id": "resp_1",
            "created_at": 1.0,
            "object": "response",
            "model": "policy",
            "status": "completed",
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
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
        "expected_answer": "Paris",
        "metadata": {"source": "geo"},
    }


def real_server(cls: type) -> Any:
    from nemo_gym.base_resources_server import BaseResourcesServerConfig
    from nemo_gym.server_utils import ServerClient

    config = BaseResourcesServerConfig(host="127.0.0.1", port=8080, entrypoint="", name="grm_judge")
    return cls(config=config, server_client=MagicMock(spec=ServerClient))


@pytest.fixture(params=["stand-in", "NeMo Gym"])
def make_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """How a resources server class becomes a server object, with ``nemo_gym`` importable."""
    if request.param == "stand-in":
        nemo_gym_standin.install(monkeypatch)
        return lambda cls: cls()
    if importlib.util.find_spec("nemo_gym") is None:
        pytest.skip("NeMo Gym is not installed (its releases need Python >= 3.12); the stand-in ran")
    return real_server


def served(make_server: Any, monkeypatch: pytest.MonkeyPatch, seen: list[dict]) -> Any:
    """The documented lines exec'd as written, the judge at their address recording what it is sent."""

    def client_for(base_url: str, api_key: str | None = None) -> g.AsyncGRMClient:
        assert base_url == "http://grm:8000"  # the documented address, unreplaced
        return g.AsyncGRMClient(base_url=base_url, api_key=api_key, transport=recording(seen))

    monkeypatch.setattr(nemo_gym, "loop_client", client_for)
    namespace = run_python_snippet("nemo_gym", {}, {"__name__": "resources_servers.grm_judge.app"})
    return make_server(namespace["GRMResourcesServer"]).setup_webserver()


async def post_verify(app: Any, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rs") as agent:
        return await agent.post("/verify", json=body)


def test_the_documented_verify_judges_against_the_tasks_reference_and_echoes_the_task(make_server, monkeypatch):
    seen: list[dict] = []
    app = served(make_server, monkeypatch, seen)
    body = rollout("Paris.")
    reply = asyncio.run(post_verify(app, body))
    assert reply.status_code == 200, reply.text
    answered = reply.json()
    # The judge's mean is min(10, len) = 6 for "Paris.": on the unit scale (6 - 1) / 9.
    assert answered["reward"] == pytest.approx(5 / 9)
    assert answered["expected_answer"] == "Paris" and answered["metadata"] == {"source": "geo"}
    (call,) = seen
    assert call["reference"] == "Paris" and call["k"] == 4 and call["responses"] == ["Paris."]
    assert call["messages"] == [{"role": "user", "content": QUESTION}]


def test_a_verify_body_typed_base_verify_request_is_refused_with_the_fix_named(monkeypatch):
    """What the docs used to write: NeMo Gym's plain BaseVerifyRequest drops the task's fields, so the
    reference is gone before ``verify`` runs; the error says which type keeps them."""
    nemo_gym_standin.install(monkeypatch)
    body = nemo_gym_standin.BaseVerifyRequest.model_validate(rollout("Paris."))
    fix = r"no 'expected_answer' field.*BaseVerifyRequest drops the fields.*extra='allow'"
    with pytest.raises(ValueError, match=fix):
        nemo_gym.reference(body, "expected_answer")
