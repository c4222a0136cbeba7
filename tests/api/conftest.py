"""API tests: the real app on a FakeEngine, driven in-process with the lifespan running."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from meta_rm.base import MetaRM
from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine


@asynccontextmanager
async def running_app(
    engine: FakeEngine, wait_ready: bool = True, *, meta_rm: MetaRM | None = None, **settings
) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(Settings(engine="fake", **settings), engine=engine, meta_rm=meta_rm)
    async with app.router.lifespan_context(app):
        if wait_ready:
            await app.state.grm.ready.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grm.test") as client:
            yield client


@pytest.fixture
def client_for() -> Callable:
    return running_app


ITEM = {"query": "Is the sky blue?", "responses": ["Yes, on a clear day.", "No."], "k": 4, "seed": 1}
