"""The Ray front's edge without a cluster: its ASGI app driven over raw ASGI with a stub backend handle.

The raw driver's ``receive()`` counts the body messages the front takes, so a test can tell an answer
given before the body was read from one given after. Through a real cluster: tests/e2e/test_ray_front_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest

from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine
from tests.api.conftest import wait_until
from tests.deploy.conftest import DEPLOY

RAY_APP = DEPLOY / "ray"
KEY = "key-a"
LIMIT = 4096  # max_body_bytes
CHUNK = 1024


@pytest.fixture(scope="module")
def ray_front() -> Iterator[ModuleType]:
    pytest.importorskip("ray.serve", reason="ray[serve] is part of the dev extra")
    sys.path.insert(0, str(RAY_APP))
    try:
        import grm_ray_front

        yield grm_ray_front
    finally:
        sys.path.remove(str(RAY_APP))


Answer = Callable[[str, str, str, list, bytes], Awaitable[tuple[int, list, bytes]]]


async def echo(method: str, path: str, query: str, headers: list, body: bytes) -> tuple[int, list, bytes]:
    return 200, [(b"content-type", b"application/json")], json.dumps({"path": path, "bytes": len(body)}).encode()


class StubBackend:
    """The grm-serve deployment's handle as the front calls it; records each call, answers with ``answer``."""

    def __init__(self, answer: Answer = echo) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def options(self, *, multiplexed_model_id: str) -> SimpleNamespace:
        async def remote(method: str, path: str, query: str, headers: list, body: bytes) -> tuple[int, list, bytes]:
            self.calls.append({"key": multiplexed_model_id, "path": path, "body": body})
            return await self.answer(method, path, query, headers, body)

        return SimpleNamespace(forward=SimpleNamespace(remote=remote))


def front(ray_front: ModuleType, backend: StubBackend, buffer_bytes: int = 1 << 20, **settings: Any) -> Any:
    config = Settings(**{"engine": "fake", "api_keys": KEY, "max_body_bytes": LIMIT, **settings})
    return ray_front.build_front_app(config, backend, buffer_bytes=buffer_bytes)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    reads: int  # body messages the app took from receive()
    read_bytes: int

    def error(self) -> dict:
        return json.loads(self.body)["error"]


async def call(
    app: Any,
    path: str,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    chunks: tuple[bytes, ...] = (),
    endless: bool = False,
    hang_up: bool = False,
    query: str = "",
    root_path: str = "",
) -> Reply:
    """One call over raw ASGI: ``chunks`` as the body; then, with ``endless``, CHUNK-byte chunks for
    ever, or with ``hang_up``, a disconnect before the body ends."""
    pending = list(chunks) if chunks or endless or hang_up else [b""]  # no body: one empty message
    sent, done = [], asyncio.Event()
    reads = read_bytes = 0

    async def receive() -> dict:
        nonlocal reads, read_bytes
        if not pending and not endless:
            if not hang_up:
                await done.wait()  # the body has ended: the caller waits for its answer
            return {"type": "http.disconnect"}
        chunk = pending.pop(0) if pending else b"x" * CHUNK
        reads, read_bytes = reads + 1, read_bytes + len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending) or endless or hang_up}

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": root_path + path, "raw_path": (root_path + path).encode(), "root_path": root_path,
        "query_string": query.encode(), "headers": raw, "client": ("127.0.0.1", 1), "server": ("front", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    heads = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return Reply(start["status"], heads, body, reads, read_bytes)


BEARER = {"authorization": f"Bearer {KEY}"}


async def test_a_call_without_a_key_is_401_before_its_body_is_read(ray_front):
    backend = StubBackend()
    reply = await call(front(ray_front, backend), "/v1/score", headers={"content-length": "10"}, chunks=(b"x" * 10,))
    assert reply.status == 401 and reply.headers["www-authenticate"] == "Bearer"
    assert reply.error() == {"type": "unauthorized", "message": reply.error()["message"], "code": 401}
    assert reply.reads == 0 and backend.calls == []


async def test_a_wrong_key_is_401_and_a_key_in_the_header_or_the_query_passes(ray_front):
    backend = StubBackend()
    app = front(ray_front, backend)
    wrong = await call(app, "/v1/score", headers={"authorization": "Bearer nope"}, chunks=(b"{}",))
    assert (wrong.status, wrong.reads) == (401, 0)
    assert (await call(app, "/v1/score", headers=BEARER, chunks=(b"{}",))).status == 200
    assert (await call(app, "/v1/score", query=f"api_key={KEY}", chunks=(b"{}",))).status == 200
    assert [c["body"] for c in backend.calls] == [b"{}", b"{}"]


@pytest.mark.parametrize("metrics_public", [True, False])
async def test_health_and_metrics_pass_without_a_key_as_the_server_allows(ray_front, metrics_public):
    backend = StubBackend()
    app = front(ray_front, backend, metrics_public=metrics_public)
    for path in ("/health/live", "/health/ready"):
        assert (await call(app, path, method="GET")).status == 200
    metrics = await call(app, "/metrics", method="GET")
    assert metrics.status == (200 if metrics_public else 401)
    # Below a Ray route_prefix (Ray's root_path) the open paths are the server's own too.
    below = await call(app, "/health/ready", method="GET", root_path="/grm")
    assert below.status == 200 and backend.calls[-1]["path"] == "/health/ready"


async def test_a_declared_length_over_the_limit_is_413_without_reading(ray_front):
    backend = StubBackend()
    headers = {**BEARER, "content-length": str(LIMIT + 1)}
    reply = await call(front(ray_front, backend), "/v1/score", headers=headers, endless=True)
    assert reply.status == 413 and reply.error()["type"] == "too_large" and reply.error()["code"] == 413
    assert reply.reads == 0 and backend.calls == []


async def test_a_streamed_body_over_the_limit_is_cut_off_at_the_limit(ray_front):
    backend = StubBackend()
    reply = await call(front(ray_front, backend), "/v1/score", headers=BEARER, endless=True)
    assert reply.status == 413 and reply.error()["type"] == "too_large"
    assert reply.read_bytes == LIMIT + CHUNK  # read up to the chunk that passed the limit, none after
    assert backend.calls == []


async def test_a_call_past_the_fronts_buffer_is_429_before_its_body_is_read_and_then_admitted(ray_front):
    release = asyncio.Event()

    async def slow(*args: Any) -> tuple[int, list, bytes]:
        await release.wait()
        return await echo(*args)

    app = front(ray_front, StubBackend(slow), buffer_bytes=LIMIT)
    body = b"x" * 3000
    first = asyncio.create_task(call(app, "/v1/score", headers={**BEARER, "content-length": "3000"}, chunks=(body,)))
    await wait_until(lambda: app.app.state.budget.held == 3000, what="the first call to hold its body")
    refused = await call(app, "/v1/score", headers={**BEARER, "content-length": "3000"}, chunks=(body,))
    assert refused.status == 429 and refused.headers["retry-after"] == "1"
    assert refused.error()["type"] == "overloaded" and refused.reads == 0
    streamed = await call(app, "/v1/score", headers=BEARER, chunks=(b"x" * CHUNK, b"x" * CHUNK))
    assert streamed.status == 429 and streamed.reads == 2  # 1096 bytes free: refused at the second chunk
    release.set()
    assert (await first).status == 200
    assert app.app.state.budget.held == 0
    assert (await call(app, "/v1/score", headers={**BEARER, "content-length": "3000"}, chunks=(body,))).status == 200


async def test_a_caller_that_hangs_up_mid_body_frees_what_it_held(ray_front):
    backend = StubBackend()
    app = front(ray_front, backend)
    reply = await call(app, "/v1/score", headers=BEARER, chunks=(b"x" * 100,), hang_up=True)
    assert reply.status == 499 and backend.calls == [] and app.app.state.budget.held == 0


@pytest.mark.parametrize(
    ("failure", "status", "type_"),
    [(RuntimeError("boom"), 500, "internal_error"), ("actor", 503, "not_ready")],
)
async def test_a_failed_forward_answers_grm_serves_error_body(ray_front, failure, status, type_):
    from ray.exceptions import RayActorError

    async def fail(*args: Any) -> tuple[int, list, bytes]:
        raise RayActorError() if failure == "actor" else failure

    reply = await call(front(ray_front, StubBackend(fail)), "/v1/score", headers=BEARER, chunks=(b"{}",))
    assert reply.status == status and reply.error()["type"] == type_ and reply.error()["code"] == status


@pytest.fixture
async def grm_serve() -> AsyncIterator[Any]:
    """A real grm-serve app (fake engine) with the front's key: what a replica answers."""
    app = build_app(Settings(engine="fake", api_keys=KEY, max_body_bytes=1 << 20), engine=FakeEngine())
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready()
        yield app


async def test_deeply_nested_json_is_routed_under_its_digest_and_answered_400_by_the_replica(ray_front, grm_serve):
    from grm_ray_app import answer_in_process  # what GRMServe.forward runs

    backend = StubBackend(lambda *args: answer_in_process(grm_serve, *args))
    app = front(ray_front, backend, max_body_bytes=1 << 20)
    nested, headers = b"[" * 100_000, {**BEARER, "content-type": "application/json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://front") as client:
        reply = await client.post("/v1/score", content=nested, headers=headers)
        again = await client.post("/v1/score", content=nested, headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == {
        "type": "invalid_request",
        "message": reply.json()["error"]["message"],
        "code": 400,
    }
    keys = [c["key"] for c in backend.calls]
    assert len(set(keys)) == 1 and not keys[0].startswith("any:")  # a retry meets its call's replica
    assert again.status_code == 400


@pytest.mark.parametrize(("labels", "keys"), [("ignore", 1), ("reference", 2)])
async def test_the_front_keys_calls_with_the_replicas_settings(ray_front, labels, keys):
    """Rollouts whose labels the replicas ignore are grouped there, so they get one key; an option at
    the replicas' default keys as one left out (review of issue #30, finding 11)."""
    backend = StubBackend()
    app = front(ray_front, backend, openrlhf_labels=labels, k=4)
    bodies = [
        ("/v1/reward", {"prompt": "p", "response": "r1", "label": "a"}),
        ("/v1/reward", {"prompt": "p", "response": "r2", "label": "b"}),
        ("/v1/score", {"query": "q", "responses": ["x"]}),
        ("/v1/score", {"query": "q", "responses": ["y"], "k": 4}),
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://front") as client:
        for path, body in bodies:
            assert (await client.post(path, json=body, headers=BEARER)).status_code == 200
    reward_keys, score_keys = [c["key"] for c in backend.calls[:2]], [c["key"] for c in backend.calls[2:]]
    assert len(set(reward_keys)) == keys and len(set(score_keys)) == 1
