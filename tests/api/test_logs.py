"""Structured logs: JSON records with the request id; no prompt or response text at INFO."""

import json
import logging

from server.engines.fake import FakeEngine
from server.ops.logs import JSONFormatter
from tests.api.conftest import ITEM, running_app


async def test_every_request_gets_a_json_access_record_with_its_request_id(caplog):
    caplog.set_level(logging.INFO)
    async with running_app(FakeEngine()) as client:
        r = await client.post("/v1/score", json=ITEM, headers={"X-Request-ID": "trainer-step-7"})
    access = [rec for rec in caplog.records if rec.name == "grm_serve.access"]
    assert len(access) == 1
    line = json.loads(JSONFormatter().format(access[0]))
    assert line["request_id"] == r.headers["x-request-id"] == "trainer-step-7"
    assert line["method"] == "POST" and line["path"] == "/v1/score" and line["status"] == 200
    assert line["duration_ms"] >= 0 and line["level"] == "info"


async def test_no_prompt_or_response_text_is_logged_at_info(caplog):
    caplog.set_level(logging.INFO)
    secret = {**ITEM, "query": "my private question zqx", "responses": ["private answer zqy", "b"]}
    async with running_app(FakeEngine()) as client:
        await client.post("/v1/score", json=secret)
    text = "\n".join(JSONFormatter().format(rec) for rec in caplog.records)
    assert "zqx" not in text and "zqy" not in text


async def test_a_500_is_logged_with_the_request_id_and_the_traceback(caplog):
    caplog.set_level(logging.INFO)
    async with running_app(FakeEngine(fail_with=RuntimeError("kaboom"))) as client:
        r = await client.post("/v1/score", json=ITEM)
    errors = [json.loads(JSONFormatter().format(rec)) for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert errors and errors[0]["request_id"] == r.headers["x-request-id"]
    assert "kaboom" in errors[0]["exc"]
