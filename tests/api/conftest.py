"""API tests: the real app on a FakeEngine, driven in-process with the lifespan running."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import httpx
import pytest

from meta_rm.base import MetaRM
from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine

T = TypeVar("T")


async def wait_until(condition: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds instead of hanging."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout}s waiting for {what}")


def post_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    """The ASGI scope of a ``POST path`` (tests that drive the app over raw ASGI, to hang up mid-call)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("grm.test", 80),
    }


def start_call(app, path: str, body: bytes) -> tuple[asyncio.Task, asyncio.Event]:
    """POST ``body`` to ``path`` over raw ASGI (inside the app's lifespan); setting the returned event
    makes the client hang up. Returns the running call and that event."""
    gone = asyncio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        pass

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return asyncio.create_task(app(post_scope(path, headers), receive, send)), gone


def as_python_json(body: object) -> dict:
    """A body as Python's json module writes it (NaN as a bare token), which httpx's own encoder refuses."""
    return {"content": json.dumps(body), "headers": {"content-type": "application/json"}}


def item(seed: int, **changes: object) -> dict:
    """``ITEM`` with another seed (a distinct request body, so it is not deduplicated) and changes."""
    return {**ITEM, "seed": seed, **changes}


@asynccontextmanager
async def running_app(
    engine: FakeEngine, wait_ready: bool = True, *, meta_rm: MetaRM | None = None, **settings
) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(Settings(engine="fake", **settings), engine=engine, meta_rm=meta_rm)
    async with app.router.lifespan_context(app):
        if wait_ready:
            await app.state.grm.wait_ready(timeout=10)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grm.test") as client:
            yield client


@pytest.fixture
def client_for() -> Callable:
    return running_app


ITEM = {"query": "Is the sky blue?", "responses": ["Yes, on a clear day.", "No."], "k": 4, "seed": 1}


async def with_stall(call: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    """Run ``call`` beside a 10 ms ticker; return its result and the event loop's longest stall meanwhile
    (seconds the ticker overslept): how long every other call, health checks included, was kept waiting."""
    stall, done = 0.0, False

    async def ticker() -> None:
        nonlocal stall
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            stall = max(stall, time.perf_counter() - t - 0.01)

    async def run() -> T:
        nonlocal done
        await asyncio.sleep(0.05)  # the ticker is running
        try:
            return await call()
        finally:
            done = True

    result, _ = await asyncio.gather(run(), ticker())
    return result, stall
