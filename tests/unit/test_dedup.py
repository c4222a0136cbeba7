"""server.dedup.Dedup on its own: a cancelled job never unregisters the job that replaced it."""

import asyncio

import pytest

from server.dedup import Dedup, JobCancelledError, KeyReusedError


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


async def test_the_cache_is_bounded_by_estimated_bytes_oldest_first():
    dedup: Dedup[str] = Dedup(ttl_s=60, max_entries=100, linger_s=0, max_bytes=10, size_of=len)

    async def value(text: str) -> str:
        return text

    for key, text in [("a", "xxxx"), ("b", "yyyy"), ("c", "zzzz")]:
        await dedup.run(key, lambda text=text: value(text), fingerprint=key)
    assert dedup.cached == 2 and dedup.cached_bytes == 8  # "a" went to make room for "c"
    assert (await dedup.run("c", lambda: value("new"), fingerprint="c")) == ("zzzz", "cached")
    assert (await dedup.run("a", lambda: value("new"), fingerprint="a")) == ("new", "new")
    await dedup.run("big", lambda: value("x" * 11), fingerprint="big")  # larger than the bound alone
    assert dedup.cached_bytes <= 10 and dedup.cached == 2


async def test_a_key_with_another_fingerprint_is_refused_running_or_cached():
    dedup: Dedup[str] = Dedup(ttl_s=60, max_entries=10, linger_s=0)
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "first"

    first = asyncio.create_task(dedup.run("k", slow, fingerprint="body-1"))
    await asyncio.sleep(0)
    with pytest.raises(KeyReusedError):
        await dedup.run("k", slow, fingerprint="body-2")
    release.set()
    assert (await first) == ("first", "new")
    with pytest.raises(KeyReusedError):
        await dedup.run("k", slow, fingerprint="body-2")
    assert (await dedup.run("k", slow, fingerprint="body-1")) == ("first", "cached")


async def test_each_waiter_times_out_alone_and_the_last_one_leaves_the_job_lingering():
    dedup: Dedup[str] = Dedup(ttl_s=60, max_entries=10, linger_s=5)

    async def job() -> str:
        await asyncio.sleep(0.2)
        return "done"

    short = asyncio.create_task(dedup.run("k", job, timeout=0.05))
    long = asyncio.create_task(dedup.run("k", job, timeout=5))
    with pytest.raises(TimeoutError):
        await short
    assert (await long) == ("done", "inflight")
    lone = asyncio.create_task(dedup.run("j", job, timeout=0.05))
    with pytest.raises(TimeoutError):
        await lone
    assert dedup.running == 1 and dedup.waiters == 0  # lingering after its only waiter's 504
    assert (await dedup.run("j", job, timeout=5)) == ("done", "inflight")  # the retry attached


async def test_closing_cancels_running_jobs_and_their_waiters_hear_of_it():
    dedup: Dedup[str] = Dedup(ttl_s=60, max_entries=10, linger_s=5)

    async def forever() -> str:
        await asyncio.sleep(30)
        return "never"

    waiting = asyncio.create_task(dedup.run("k", forever, timeout=10))
    await asyncio.sleep(0.01)
    await dedup.close()
    with pytest.raises(JobCancelledError):
        await waiting
    assert dedup.running == 0
