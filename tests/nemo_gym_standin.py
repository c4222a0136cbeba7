"""NeMo Gym's resources-server API as far as docs/trainers.md's NeMo Gym lines use it, where NeMo Gym is
not installed (its package-index releases need Python >= 3.12; this project's environment is 3.11).

Reproduced from ``nemo_gym/base_resources_server.py`` and ``nemo_gym/judge.py`` (NVIDIA-NeMo/Gym main
at 07d6b0d): the verify request and response models, plain pydantic models that drop the fields they
do not declare (what the documented body type must get around), and ``SimpleResourcesServer``'s
``/verify`` route, wrapped in ``judge_failsafe``. NeMo Gym types ``responses_create_params`` and
``response`` with its Responses-API models; they are dicts here, and the same test runs against the
real classes where NeMo Gym is importable (tests/clients/test_nemo_gym_docs.py).
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class BaseRunRequest(BaseModel):
    responses_create_params: dict[str, Any]


class BaseVerifyRequest(BaseRunRequest):
    response: dict[str, Any]


class BaseVerifyResponse(BaseVerifyRequest):
    reward: float


class JudgeError(Exception):
    """A judge call failed; judge_failsafe routes the row to the failures sidecar."""


def judge_failsafe(verify_fn: Callable) -> Callable:
    """A JudgeError becomes a reward-0 row marked ``judge_failed``; any other error propagates."""

    @functools.wraps(verify_fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await verify_fn(*args, **kwargs)
        except JudgeError as e:
            failure = {"reward": 0.0, "_ng_failure_class": "judge_failed", "_ng_failure_judge_error": str(e)}
            data = kwargs["body"].model_dump() | failure
            return JSONResponse(content=jsonable_encoder(data))

    return wrapper


class SimpleResourcesServer:
    """The server's web app as NeMo Gym sets it up; its config and server client are not used here."""

    def __init__(self, **_: Any) -> None:
        pass

    def setup_webserver(self) -> FastAPI:
        app = FastAPI()
        app.post("/verify")(judge_failsafe(self.verify))
        return app

    async def verify(self, body: BaseVerifyRequest) -> BaseVerifyResponse:
        raise NotImplementedError


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``from nemo_gym.base_resources_server import ...`` find this module for one test."""
    package = types.ModuleType("nemo_gym")
    package.__path__ = []
    module = sys.modules[__name__]
    package.base_resources_server = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nemo_gym", package)
    monkeypatch.setitem(sys.modules, "nemo_gym.base_resources_server", module)
