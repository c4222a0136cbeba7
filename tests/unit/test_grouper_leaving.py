"""The grouper when callers leave as their batch fails (review of issue #30, finding 9)."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from server.engines.base import PromptTooLongError
from server.pipeline.domain import Message
from server.pipeline.scoring import ScoreSpec
from server.serving.grouping import Grouper


def spec(*responses: str) -> ScoreSpec:
    return ScoreSpec((Message("user", "Q"),), responses, k=2, temperature=0.5, top_p=1.0, max_tokens=256)


async def test_callers_that_all_left_as_their_batch_was_too_long_get_no_lone_judging(caplog):
    """When every caller left in the loop step in which the batch's prompt was found too long, Python
    3.11's TaskGroup raises the failure, not the cancellation: the batch was split and each departed
    caller's row judged alone (engine work for nobody), and that judging's failure landed on a future
    nobody read (asyncio: "Future exception was never retrieved", an ERROR record)."""
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
