"""The grouper's books and its callers leaving (review of issue #30, findings 5 to 7 and 9): what a
call's rows cost, a batch's samples on admission's books until it ends, and no work for nobody."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from server.engines.base import PromptTooLongError
from server.pipeline.domain import Message
from server.pipeline.scoring import ScoreSpec
from server.serving.admission import Admission, WorkGate
from server.serving.grouping import Grouper


def spec(*responses: str, query: str = "Q") -> ScoreSpec:
    return ScoreSpec((Message("user", query),), responses, k=2, temperature=0.5, top_p=1.0, max_tokens=256)


async def never_judged(s: ScoreSpec, request_id: str):
    raise AssertionError("judged")


async def test_a_calls_rows_cost_k_per_batch_they_open_after_the_room_left_in_the_open_one():
    """Finding 5: every row was checked alone against the open batch, so each "would join" it."""
    admission = Admission(WorkGate(8), max_calls=10)
    grouper = Grouper(never_judged, window_s=30, max_group_size=4)
    with admission.admit("", 2, deadline_s=60) as opener:
        seat = grouper.enter(spec("opener"), opener)  # a batch collecting, 1 of 4 responses
    rows = [spec(f"row {i}") for i in range(10)]
    samples, joins = grouper.plan([*rows, spec("other", query="Another prompt")])
    assert samples == 2 * 2 + 2  # 3 rows join, 7 open two batches (k=2 each); the other prompt opens one
    assert joins == [opener.place] * 3
    # two responses join (3 of 4 taken); the next two do not fit in the one left: a new batch
    assert grouper.plan([spec("a", "b"), spec("c", "d")]) == (2, [opener.place])
    grouper.leave(seat)
    assert grouper.collecting == 0 and admission.outstanding == {}


async def test_a_batch_keeps_its_samples_on_the_books_until_it_ends_whoever_left():
    """Finding 7: the opener's samples left the books with it while the batch went on for a joiner."""
    admission = Admission(WorkGate(8), max_calls=10)
    failed = asyncio.Event()

    async def judge(s: ScoreSpec, request_id: str):
        await failed.wait()
        raise ValueError("the engine failed")

    grouper = Grouper(judge, window_s=0.01, max_group_size=4)
    with admission.admit("t", 2, deadline_s=60) as call:
        opener = grouper.enter(spec("a"), call)
    assert admission.outstanding == {"t": 2}  # the call ended; its batch holds what it handed over
    joiner = asyncio.create_task(grouper.wait(grouper.enter(spec("b"))))
    grouper.leave(opener)
    while not grouper.judging:
        await asyncio.sleep(0)
    assert admission.outstanding == {"t": 2}
    failed.set()
    with pytest.raises(ValueError):
        await joiner
    assert admission.outstanding == {}


async def test_a_too_long_batch_counts_k_per_call_judged_alone_until_each_ends():
    admission = Admission(WorkGate(8), max_calls=10)
    release = asyncio.Event()

    async def judge(s: ScoreSpec, request_id: str):
        if len(s.responses) > 1:
            raise PromptTooLongError("too long")
        await release.wait()
        raise PromptTooLongError("too long alone too")

    grouper = Grouper(judge, window_s=30, max_group_size=2)
    with admission.admit("t", 2, deadline_s=60) as call:
        seats = [grouper.enter(spec("a"), call), grouper.enter(spec("b"))]  # full: judged at once
    callers = [asyncio.create_task(grouper.wait(seat)) for seat in seats]
    while admission.outstanding["t"] < 4:
        await asyncio.sleep(0)
    assert admission.outstanding == {"t": 4}  # two calls judged alone, k=2 samples each
    release.set()
    for caller in callers:
        with pytest.raises(PromptTooLongError):
            await caller
    while grouper.judging:
        await asyncio.sleep(0)
    assert admission.outstanding == {}


async def test_callers_that_all_left_as_their_batch_was_too_long_get_no_lone_judging(caplog):
    """When every caller left in the loop step in which the batch's prompt was found too long, Python
    3.11's TaskGroup raises the failure, not the cancellation: the batch was split and each departed
    caller's row judged alone (engine work for nobody), and that judging's failure landed on a future
    nobody read (asyncio: "Future exception was never retrieved", an ERROR record)."""
    gc.collect()  # what earlier tests left unread is logged now, not in this test's records
    caplog.clear()
    release = asyncio.Event()
    judged: list[tuple[str, ...]] = []

    async def engine_request(s: ScoreSpec) -> None:
        if len(s.responses) > 1:
            await release.wait()
        raise PromptTooLongError("too long")  # the batch, and each row on its own too

    async def judge(s: ScoreSpec, request_id: str):
        judged.append(s.responses)
        async with asyncio.TaskGroup() as tg:  # as Scorer.score runs its engine requests
            tg.create_task(engine_request(s))

    grouper = Grouper(judge, window_s=30, max_group_size=2)
    callers = [asyncio.create_task(grouper.score(spec(r))) for r in ("a", "b")]  # the second fills the batch
    while not grouper.judging:
        await asyncio.sleep(0)
    await asyncio.sleep(0)  # the batch is inside its judge, its engine request waiting
    release.set()  # the engine request fails in the next step, in which both callers hang up
    for c in callers:
        c.cancel()
    for c in callers:
        with pytest.raises(asyncio.CancelledError):
            await c
    while grouper.judging:
        await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del callers, grouper
        gc.collect()  # an unread future's exception is logged when it is collected
    assert judged == [("a", "b")]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
