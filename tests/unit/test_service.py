"""The serving layer driven with plain values, no HTTP: validation, then the scoring service."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from server.config import Settings
from server.engines.fake import FakeEngine
from server.pipeline.domain import Message
from server.serving.context import CallContext, dedup_key
from server.serving.errors import APIError, ClientClosedError
from server.serving.service import ScoringService
from server.serving.state import AppState
from server.serving.validation import ItemOptions, Validator

QUESTION = (Message("user", "Is the sky blue?"),)
ANSWERS = ("Yes, on a clear day.", "No.")


@asynccontextmanager
async def serving(engine: FakeEngine, **settings) -> AsyncIterator[tuple[Validator, ScoringService]]:
    state = AppState(settings=Settings(engine="fake", **settings), engine=engine)
    service = ScoringService(state)
    state.begin()
    try:
        await state.wait_ready(timeout=5)
        yield Validator(state.settings, refuse_k_meta=lambda: not state.has_meta_rm), service
    finally:
        await service.grouper.close()
        await service.dedup.close()
        await state.close()


def call(request_id: str = "r", **changes) -> CallContext:
    return CallContext(deadline_s=changes.pop("deadline_s", 10.0), request_id=request_id, **changes)


async def test_a_validated_item_is_scored_without_http():
    engine = FakeEngine()
    async with serving(engine, k=4) as (validator, service):
        spec = validator.resolve(ItemOptions(messages=QUESTION, responses=ANSWERS, seed=1))
        (result,) = await service.score(call(), [spec])
    assert [r.votes for r in result.responses] == [4, 4]
    assert result.responses[0].mean_score > result.responses[1].mean_score  # the fake judge prefers length
    # Engine request ids are the server's own (the caller's id "r" is for logs): item 0's, unique per call.
    assert engine.requests and all(re.fullmatch(r"[0-9a-f]{32}-i0-g0-p\d+", r.request_id) for r in engine.requests)


async def test_validation_is_apart_from_execution():
    async with serving(FakeEngine(), max_k=8) as (validator, _):
        with pytest.raises(APIError, match="k = 9 exceeds the server limit max_k = 8") as error:
            validator.resolve(ItemOptions(messages=QUESTION, responses=ANSWERS, k=9))
        assert error.value.status == 400
        with pytest.raises(APIError, match="no meta RM"):
            validator.resolve(ItemOptions(messages=QUESTION, responses=ANSWERS, k_meta=1))


async def test_two_calls_with_one_dedup_key_share_one_job():
    engine = FakeEngine(delay=0.2)
    async with serving(engine, k=2) as (validator, service):
        spec = validator.resolve(ItemOptions(messages=QUESTION, responses=ANSWERS))
        key = dedup_key("tenant:/v1/score", "retry-1", "fp", identical_bodies=True)
        same = [call(f"r{i}", dedup_key=key, fingerprint="fp", tenant="tenant") for i in range(2)]
        first, second = await asyncio.gather(*(service.score(c, [spec]) for c in same))
    assert first == second
    assert engine.requests_total == 2  # one job's engine requests (k=2: two orders of the pair) for both calls


async def test_a_call_whose_client_hangs_up_is_cancelled_and_its_engine_work_aborted():
    engine = FakeEngine(delay=5.0)
    hung_up = asyncio.Event()
    async with serving(engine, k=2) as (validator, service):
        spec = validator.resolve(ItemOptions(messages=QUESTION, responses=ANSWERS))
        task = asyncio.create_task(service.score(call(disconnected=hung_up.wait), [spec]))
        while not engine.running:
            await asyncio.sleep(0.01)
        hung_up.set()
        with pytest.raises(ClientClosedError):
            await task
        while engine.running:
            await asyncio.sleep(0.01)
    assert engine.aborted_total == engine.requests_total == 2  # each of the call's engine requests


async def test_a_call_past_its_deadline_gets_504():
    async with serving(FakeEngine(delay=5.0), k=2, idempotency_linger_s=0) as (validator, service):
        spec = validator.resolve(ItemOptions(messages=QUESTION, responses=ANSWERS))
        with pytest.raises(APIError) as error:
            await service.score(call(deadline_s=0.1), [spec])
    assert error.value.status == 504


async def test_before_the_engine_is_up_a_call_gets_503():
    state = AppState(settings=Settings(engine="fake"), engine=FakeEngine())
    service = ScoringService(state)  # never started
    spec = Validator(state.settings).resolve(ItemOptions(messages=QUESTION, responses=ANSWERS))
    with pytest.raises(APIError) as error:
        await service.score(call(), [spec])
    assert (error.value.status, error.value.type) == (503, "not_ready")
