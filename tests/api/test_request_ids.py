"""Engine request ids are the server's own: callers that share an ``X-Request-ID`` never share engine work."""

from __future__ import annotations

import asyncio

from server.engines.fake import FakeEngine
from tests.api.conftest import running_app


async def test_concurrent_calls_with_one_request_id_get_their_own_engine_requests():
    engine = FakeEngine(delay=0.2)
    same_id = {"x-request-id": "step-17"}  # a trainer tagging a whole step with one id
    async with running_app(engine, k=2, group_window_s=0) as client:
        first, second = await asyncio.gather(
            client.post("/v1/score", json={"query": "Q1", "responses": ["a", "bb"]}, headers=same_id),
            client.post("/v1/score", json={"query": "Q2", "responses": ["c", "dd"]}, headers=same_id),
        )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.headers["x-request-id"] == second.headers["x-request-id"] == "step-17"  # the caller's id, echoed
    ids = [r.request_id for r in engine.requests]
    assert len(ids) == len(set(ids)) == 4 and not any("step-17" in i for i in ids)
