"""server.dedup.Dedup on its own: a cancelled job never unregisters the job that replaced it."""

import asyncio

from server.dedup import Dedup


async def test_a_cancelled_job_unwinding_late_leaves_its_successor_registered():
    dedup: Dedup[str] = Dedup(ttl_s=0, max_entries=0, linger_s=0.01)
    release = asyncio.Event()
    started: list[str] = []

    async def slow_to_unwind(name: str) -> str:
        started.append(name)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await release.wait()  # still unwinding when the retry arrives
            raise
        return name

    async def quick() -> str:
        await asyncio.sleep(0.05)
        return "second"

    first = asyncio.create_task(dedup.run("k", lambda: slow_to_unwind("first")))
    await asyncio.sleep(0.01)
    first.cancel()  # the client hung up; the job is cancelled after the linger
    await asyncio.sleep(0.05)
    second = asyncio.create_task(dedup.run("k", quick))
    await asyncio.sleep(0)
    release.set()  # the first job now finishes unwinding
    await asyncio.sleep(0)
    third = asyncio.create_task(dedup.run("k", quick))
    assert (await second) == ("second", "new")
    assert (await third) == ("second", "inflight")  # joined the successor, not a job of its own
    assert started == ["first"]
