"""The fake engine's record of requests is bounded (a long ``grm-serve --engine fake`` stays flat) and
its counters stay exact."""

from __future__ import annotations

import asyncio

import pytest

from server.engines.base import GenerationRequest
from server.engines.fake import DEFAULT_RECORD_LIMIT, BoundedList, FakeEngine


def request(i: int) -> GenerationRequest:
    return GenerationRequest(request_id=f"r{i}", prompt=f"prompt {i}", n=2, temperature=0.5, top_p=1.0, max_tokens=64)


def totals(engine: FakeEngine) -> dict[str, float]:
    return {m.name: m.samples[0].value for m in engine.metric_families()}


async def test_the_record_stays_bounded_and_the_counters_exact() -> None:
    engine = FakeEngine()
    await engine.start()
    for i in range(5000):
        await engine.generate(request(i))
    assert len(engine.requests) == DEFAULT_RECORD_LIMIT == engine.record_limit
    assert engine.requests_total == 5000
    # The newest are kept, in order.
    assert [r.request_id for r in engine.requests[-3:]] == ["r4997", "r4998", "r4999"]
    assert engine.requests[0].request_id == f"r{5000 - DEFAULT_RECORD_LIMIT}"
    # The metric family counts every call, not the kept ones.
    assert totals(engine) == {"fake_engine:num_requests_running": 0, "fake_engine:requests": 5000}


async def test_aborts_are_bounded_and_counted() -> None:
    engine = FakeEngine(delay=10, record_limit=3)
    await engine.start()
    tasks = [asyncio.create_task(engine.generate(request(i))) for i in range(5)]
    await asyncio.sleep(0)
    assert len(engine.running) == 5
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for i in range(5, 8):
        await engine.abort(f"r{i}")
    assert engine.running == set()
    assert engine.aborted == ["r5", "r6", "r7"] and engine.aborted_total == 8
    assert [r.request_id for r in engine.requests] == ["r2", "r3", "r4"] and engine.requests_total == 5


async def test_a_fresh_engine_reads_like_the_lists_tests_expect() -> None:
    engine = FakeEngine()
    assert engine.requests == [] and engine.aborted == [] and not engine.requests
    assert engine.requests_total == engine.aborted_total == 0
    await engine.start()
    await engine.generate(request(0))
    (only,) = engine.requests
    assert only.request_id == "r0" and engine.requests[len(engine.requests) :] == []
    assert totals(engine)["fake_engine:requests"] == 1


def test_bounded_list_keeps_the_newest_items_with_list_semantics() -> None:
    kept = BoundedList(3, range(5))
    assert kept == [2, 3, 4] and isinstance(kept, list)
    kept.append(5)
    kept.extend([6, 7])
    assert kept == [5, 6, 7]
    kept += [8]
    assert kept == [6, 7, 8] and isinstance(kept, BoundedList)
    kept.insert(0, 0)
    assert kept == [6, 7, 8]  # trimming drops from the front: here the item just inserted
    assert kept[1:] == [7, 8] and kept[-1] == 8 and list(reversed(kept)) == [8, 7, 6]
    with pytest.raises(ValueError):
        BoundedList(0)
