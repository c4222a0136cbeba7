"""server.serving.admission on its own: the work gate's capacity and fairness, and admission by deadline."""

from __future__ import annotations

import asyncio

import pytest

from server.serving.admission import Admission, WorkGate, current_place
from server.serving.errors import APIError


async def test_the_gate_holds_at_most_its_capacity_in_samples():
    gate = WorkGate(8)
    peak = 0

    async def request(n: int) -> None:
        nonlocal peak
        async with gate.hold("t", n):
            peak = max(peak, gate.inflight)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(request(n) for n in (4, 4, 2, 8, 1, 3)))
    assert peak == 8 and gate.inflight == gate.queued == 0


async def test_a_request_larger_than_the_capacity_runs_alone():
    gate = WorkGate(4)
    async with gate.hold("t", 6):
        assert gate.inflight == 6


async def test_a_second_tenant_is_served_before_the_first_tenants_backlog():
    gate = WorkGate(2)
    order: list[str] = []

    async def request(tenant: str, i: int) -> None:
        async with gate.hold(tenant, 2):
            order.append(f"{tenant}{i}")
            await asyncio.sleep(0.02)

    burst = [asyncio.create_task(request("a", i)) for i in range(6)]
    await asyncio.sleep(0.005)  # a0 runs, a1..a5 wait
    late = asyncio.create_task(request("b", 0))
    await asyncio.gather(*burst, late)
    assert order.index("b0") == 1  # right after the request that was running when it arrived


async def test_a_cancelled_waiter_gives_its_place_up():
    gate = WorkGate(1)
    async with gate.hold("t", 1):
        waiting = asyncio.create_task(gate.hold("t", 1).__aenter__())
        await asyncio.sleep(0)
        assert gate.queued == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert gate.queued == 0
    assert gate.inflight == 0 and gate.waiting_requests == 0


async def measured_gate(capacity: int, took_s: float) -> WorkGate:
    """A gate that has seen requests of ``capacity`` samples take ``took_s`` each while others waited."""
    gate = WorkGate(capacity)

    async def request() -> None:
        async with gate.hold("t", capacity):
            await asyncio.sleep(took_s)

    await asyncio.gather(*(request() for _ in range(4)))
    return gate


async def test_the_drain_rate_is_measured_while_requests_wait():
    gate = await measured_gate(8, 0.4)
    rate = gate.drain_rate()
    assert rate is not None and 15 < rate < 21  # 8 samples per 0.4 s


async def test_a_call_whose_estimated_completion_misses_its_deadline_is_refused_at_once_with_retry_after():
    gate = await measured_gate(8, 0.4)  # ~20 samples/s
    admission = Admission(gate, max_calls=100)
    with (
        admission.admit("a", 200, deadline_s=600),  # ~10 s of work admitted
        pytest.raises(APIError) as refused,
        admission.admit("a", 8, deadline_s=2),
    ):
        pass
    assert refused.value.status == 429 and refused.value.type == "overloaded"
    retry_after = int(refused.value.retry_after or 0)
    assert 7 <= retry_after <= 10  # ~10.4 s to its end, 2 s allowed: come back in ~8 s
    assert admission.calls == 0 and admission.outstanding == {}


async def test_another_tenants_call_is_estimated_by_its_fair_share_not_the_whole_backlog():
    gate = await measured_gate(8, 0.4)
    admission = Admission(gate, max_calls=100)
    with admission.admit("a", 2000, deadline_s=600):  # ~100 s of tenant a's work
        assert admission.estimated_wait("a", 8) > 90
        assert admission.estimated_wait("b", 8) < 1
        with admission.admit("b", 8, deadline_s=5):
            pass


async def test_calls_past_the_memory_guard_are_refused():
    reasons: list[str] = []
    admission = Admission(WorkGate(8), max_calls=1, on_reject=reasons.append)
    with admission.admit("a", 1, deadline_s=60), pytest.raises(APIError) as refused, admission.admit("a", 1, 60):
        pass
    assert refused.value.status == 429 and reasons == ["calls"]


# ---- found by the review of this change ----------------------------------------------------------


async def test_an_idle_gap_between_bursts_does_not_lower_the_measured_rate():
    gate = WorkGate(8)

    async def burst() -> None:
        async def request() -> None:
            async with gate.hold("t", 8):
                await asyncio.sleep(0.2)

        await asyncio.gather(*(request() for _ in range(8)))

    await burst()
    before = gate.drain_rate()
    await asyncio.sleep(1.5)  # the trainer's optimizer step
    await burst()
    after = gate.drain_rate()
    assert before is not None and after is not None
    assert 30 < before < 50 and 30 < after < 50  # 8 samples per 0.2 s, both times


async def test_aborted_and_failed_requests_do_not_move_the_latency_or_the_rate():
    gate = await measured_gate(8, 0.4)
    latency, rate = gate.latency, gate.drain_rate()

    async def aborted() -> None:
        async with gate.hold("t", 8):
            await asyncio.sleep(0.01)
            raise RuntimeError("the engine refused it")

    for _ in range(10):
        with pytest.raises(RuntimeError):
            await aborted()
    assert gate.latency == latency and gate.drain_rate() == rate


async def test_a_tenants_cancelled_backlog_costs_it_nothing_afterwards():
    gate = WorkGate(2)
    order: list[str] = []

    async def request(tenant: str, i: int) -> None:
        async with gate.hold(tenant, 2):
            order.append(f"{tenant}{i}")
            await asyncio.sleep(0.02)

    others = [asyncio.create_task(request("b", i)) for i in range(6)]
    await asyncio.sleep(0.005)
    cancelled = [asyncio.create_task(request("a", i)) for i in range(20)]
    await asyncio.sleep(0.005)
    for task in cancelled:
        task.cancel()
    await asyncio.sleep(0.005)
    retry = asyncio.create_task(request("a", 99))
    await asyncio.gather(*others, retry, return_exceptions=True)
    assert order.index("a99") <= 2  # next after the running request (and at most one of b's)


async def test_a_short_deadline_on_an_empty_queue_is_the_callers_to_try():
    gate = await measured_gate(8, 0.4)  # a mean run of 0.4 s
    with Admission(gate, max_calls=10).admit("a", 1, deadline_s=0.1):
        pass  # admitted: no queue is in its way; it gets 504 if it is not fast enough


# ---- issue #30: the gate at its edges --------------------------------------------------------------


async def test_a_waiter_cancelled_in_the_step_a_release_would_grant_it_is_settled_not_granted():
    """Finding 1: its task is cancelled (its future with it) and, before its cleanup runs, the holder
    releases; the gate must skip it, not grant it (InvalidStateError, its samples counted twice)."""
    gate = WorkGate(2)
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.hold("t", 2):
            await release.wait()

    async def waiter() -> None:
        async with gate.hold("t", 2):
            pytest.fail("a cancelled waiter was let in")

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert gate.inflight == 2 and gate.queued == 2
    release.set()  # the holder's wake-up is scheduled first ...
    second.cancel()  # ... then the waiter's cancellation: the release runs before its cleanup
    await first  # no InvalidStateError
    with pytest.raises(asyncio.CancelledError):
        await second
    assert (gate.inflight, gate.queued, gate.waiting_requests, gate.tenant_inflight) == (0, 0, 0, {})
    async with asyncio.timeout(1), gate.hold("t", 2):  # and the capacity is there again
        assert gate.inflight == 2


async def test_a_waiter_granted_in_the_step_it_is_cancelled_gives_its_grant_back():
    gate = WorkGate(2)

    async def waiter() -> None:
        async with gate.hold("t", 2):
            pytest.fail("a cancelled waiter ran")

    held = gate.hold("t", 2)
    await held.__aenter__()
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    await held.__aexit__(None, None, None)  # releases without a loop step: the waiter is granted ...
    assert gate.inflight == 2 and gate.queued == 0
    second.cancel()  # ... and cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await second
    assert (gate.inflight, gate.queued, gate.tenant_inflight) == (0, 0, {})


async def test_within_a_tenant_a_calls_later_request_goes_before_later_calls():
    """Finding 4 at the gate: a request with an earlier ticket (an adaptive call's round 2) is served
    before the requests its tenant queued after that call."""
    gate = WorkGate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def request(name: str, ticket: int | None = None) -> None:
        async with gate.hold("t", 1, ticket):
            order.append(name)
            await release.wait()

    early = gate.take_ticket()  # the adaptive call's place
    tasks = [asyncio.create_task(request("round 1", early))]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(request(f"later {i}")) for i in range(3)]  # later calls (fresh tickets)
    tasks.append(asyncio.create_task(request("round 2", early)))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["round 1", "round 2", "later 0", "later 1", "later 2"]


async def test_a_call_that_only_joins_a_batch_is_judged_by_that_batch_not_its_tenants_backlog():
    """Finding 5 in admission: a joining row brings no work; its wait is the opening call's."""
    gate = await measured_gate(8, 0.4)  # ~20 samples/s
    admission = Admission(gate, max_calls=100)
    with admission.admit("a", 8, deadline_s=600) as opener, admission.admit("a", 2000, deadline_s=600):
        with pytest.raises(APIError), admission.admit("a", 8, deadline_s=5):  # its own work: behind ~100 s
            pass
        with admission.admit("a", 0, deadline_s=5, joins=[opener.place]) as joiner:
            assert joiner.place.ticket > opener.place.ticket


async def test_admission_gives_each_call_its_place_for_the_requests_it_sends():
    gate = WorkGate(8)
    admission = Admission(gate, max_calls=10)
    with admission.admit("a", 1, deadline_s=60) as first:
        assert current_place.get() == first.place
        with admission.admit("a", 1, deadline_s=60) as second:
            assert current_place.get() == second.place and second.place.ticket > first.place.ticket
        assert current_place.get() == first.place
    assert current_place.get() is None
