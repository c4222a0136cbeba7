"""server.serving.dedup.Dedup on its own: a cancelled job never unregisters the job that replaced it."""

import asyncio

import pytest

from server.serving.dedup import Dedup, JobCancelledError, KeyReusedError


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
    async def value(text: str) -> str:
        return text

    probe: Dedup[str] = Dedup(ttl_s=60, max_entries=100, linger_s=0, size_of=len)
    await probe.run("a", lambda: value("x" * 1000), fingerprint="a")
    entry = probe.cached_bytes  # one result of 1000 "bytes" with its key and record
    assert entry >= 1000
    dedup: Dedup[str] = Dedup(ttl_s=60, max_entries=100, linger_s=0, max_bytes=int(2.5 * entry), size_of=len)
    for key in "abc":
        await dedup.run(key, lambda: value("x" * 1000), fingerprint=key)
    assert dedup.cached == 2 and dedup.cached_bytes == 2 * entry  # "a" went to make room for "c"
    assert (await dedup.run("c", lambda: value("new"), fingerprint="c")) == ("x" * 1000, "cached")
    assert (await dedup.run("a", lambda: value("new"), fingerprint="a")) == ("new", "new")
    await dedup.run("big", lambda: value("x" * 3 * entry), fingerprint="big")  # larger than the bound alone
    assert dedup.cached_bytes <= dedup.max_bytes and "big" not in dedup._done


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


async def test_a_full_cache_drops_the_oldest_result_of_the_tenant_holding_the_most():
    dedup: Dedup[str] = Dedup(ttl_s=60, max_entries=4, linger_s=0)

    async def value(text: str) -> str:
        return text

    await dedup.run("b-1", lambda: value("b"), fingerprint="b-1", scope="tenant-b")
    for i in range(10):  # tenant A's burst
        await dedup.run(f"a-{i}", lambda: value("a"), fingerprint=f"a-{i}", scope="tenant-a")
    assert (await dedup.run("b-1", lambda: value("again"), fingerprint="b-1", scope="tenant-b")) == ("b", "cached")
    assert dedup.cached == 4  # B's one result and A's newest three


async def test_a_closed_dedup_refuses_new_jobs():
    dedup: Dedup[str] = Dedup(ttl_s=60, max_entries=10, linger_s=0)
    await dedup.close()

    async def job() -> str:
        return "late"

    with pytest.raises(JobCancelledError):
        await dedup.run("k", job)
