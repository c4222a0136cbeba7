"""Stateful property test of the work gate (server/serving/gate.py), one event-loop step at a time.

Hypothesis drives a :class:`~server.serving.gate.WorkGate` on an event loop of the test's own, which
only moves when a rule says so (``step``: one loop iteration; ``settle``: until nothing changes). So
every interleaving of these events is reachable, in the same loop step or across steps:

* a call takes its place (a ticket) and sends requests of 1 to capacity + 2 samples (larger than the
  capacity too), from one of three tenants, or a request comes without a call (a fresh ticket);
* a request's task is cancelled (a client that left) or its deadline passes (``asyncio.timeout``) at
  any point: while it waits, in the step it is granted or just before, while it holds the gate;
* a holder finishes or fails; the capacity changes; everything is cancelled at once (shutdown).

Invariants, checked once the loop has settled after every rule: no task ends with anything but its
own outcome (an ``InvalidStateError`` from granting a cancelled waiter would show here) and the loop
reports no error; ``inflight`` equals the samples of the requests inside the gate (granted, not
released; per tenant too), ``queued`` and ``waiting_requests`` equal those still waiting; nothing
waits while the gate is empty (the hang of issue #30); at most ``capacity`` samples are inside unless
one request alone is; and within a tenant a request is never granted while one with an earlier ticket
still waits at the gate. When nothing is inside or waiting, the gate is back to full.

A grant is seen where the gate makes it (it resolves the request's future: :class:`GrantSeen`), not
when the request's task next runs: a request granted inside its own ``hold`` (the gate had room) goes
on in the same step, ahead of one granted a moment earlier whose task resumes a step later.

The number of cases is ``GRM_GATE_EXAMPLES`` (default 300 machines of up to 60 rules each,
derandomised so CI is repeatable).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from server.serving.gate import Place, WorkGate, current_place

EXAMPLES = int(os.environ.get("GRM_GATE_EXAMPLES", "300"))
CAPACITY = 4
TENANTS = ("a", "b", "c")
OUTCOMES = {"ok", "failed", "cancelled", "timeout"}


class EngineFailed(Exception):
    """What a holder's body raises when the test fails its engine request."""


@dataclass(frozen=True)
class Call:
    tenant: str
    ticket: int


@dataclass(eq=False)
class Request:
    tenant: str
    samples: int
    ticket: int | None
    done: asyncio.Future[None]  # the test resolves it to end the request's engine work
    task: asyncio.Task[None] | None = None
    timeout: asyncio.Timeout | None = None
    place: int = -1  # its ticket: its call's, or (without a call) the one the gate takes for it
    order: int = -1  # when it reached the gate (the gate's own queue order)
    granted: bool = False  # the gate resolved its future (its task may not have run since)
    cancelled: bool = False  # the test cancelled it or passed its deadline
    inside: bool = False
    outcome: str | None = None


class GrantSeen(asyncio.Future):
    """The future the gate creates for a waiting request: it tells the machine the moment the gate
    grants it (``set_result``), before the request's task resumes."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, on_grant: Callable[[], None]) -> None:
        super().__init__(loop=loop)
        self.on_grant = on_grant

    def set_result(self, result: object) -> None:
        self.on_grant()
        super().set_result(result)


class StepLoop(asyncio.SelectorEventLoop):
    """The test's loop: a future created inside a request's task (the gate's, in ``hold``) reports its
    grant to ``granted``."""

    def __init__(self, granted: Callable[[asyncio.Task], None]) -> None:
        super().__init__()
        self.granted = granted

    def create_future(self) -> asyncio.Future:
        task = asyncio.current_task(self)
        if task is None:
            return super().create_future()
        return GrantSeen(loop=self, on_grant=lambda: self.granted(task))


class GateMachine(RuleBasedStateMachine):
    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.loop = StepLoop(self._granted)
        self.loop_errors: list[dict] = []
        self.loop.set_exception_handler(lambda _, context: self.loop_errors.append(context))
        self.gate = WorkGate(CAPACITY)
        self.requests: list[Request] = []
        self.clock = 0  # loop steps run
        self.order = itertools.count()
        self.tickets = 0  # tickets the gate gave so far: a request without a call takes the next
        self.capacity_bound = CAPACITY  # the most the gate may hold: capacity, or more after it shrank
        self.violations: list[str] = []

    # ---- the loop, one step at a time -----------------------------------------------------------

    def _step(self) -> None:
        self.clock += 1
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()  # one iteration: the callbacks ready now, and timers due

    def _snapshot(self) -> tuple:
        g = self.gate
        return (g.inflight, g.queued, g.waiting_requests, *((r.inside, r.outcome) for r in self.requests))

    def _settle(self) -> None:
        quiet, before = 0, self._snapshot()
        for _ in range(60):
            self._step()
            now = self._snapshot()
            quiet = quiet + 1 if now == before else 0
            if quiet >= 3:
                return
            before = now
        raise AssertionError("the loop did not settle in 60 steps")

    async def _run(self, r: Request) -> None:
        try:
            async with asyncio.timeout(None) as deadline:
                r.timeout = deadline
                r.order = next(self.order)
                if r.ticket is None:
                    r.place, self.tickets = self.tickets, self.tickets + 1
                else:  # as admission does: the call's place, in a context variable its tasks inherit
                    r.place = r.ticket
                    current_place.set(Place(r.ticket, 0.0))
                async with self.gate.hold(r.tenant, r.samples):
                    r.inside = True
                    try:
                        await r.done
                    finally:
                        r.inside = False
            r.outcome = "ok"
        except EngineFailed:
            r.outcome = "failed"
        except asyncio.CancelledError:
            r.outcome = "cancelled"
        except TimeoutError:
            r.outcome = "timeout"
        except BaseException as exc:  # recorded: the invariant reports it
            r.outcome = f"unexpected {exc!r}"

    def _granted(self, task: asyncio.Task) -> None:
        """The gate grants ``task``'s request: within its tenant, nothing with an earlier place (ticket,
        then arrival) may still wait."""
        r = next(r for r in self.requests if r.task is task)
        for w in self._waiting():
            ahead = (w.place, w.order) < (r.place, r.order)
            if w.tenant == r.tenant and not w.cancelled and ahead:
                self.violations.append(f"{r} was granted ahead of {w}")
        r.granted = True

    def _waiting(self) -> list[Request]:
        return [r for r in self.requests if r.order >= 0 and not r.granted and r.outcome is None]

    # ---- rules -------------------------------------------------------------------------------------

    @rule(target=calls, tenant=st.sampled_from(TENANTS))
    def new_call(self, tenant: str) -> Call:
        """A call is admitted: its place in line (its requests, however late, keep it)."""
        ticket = self.gate.take_ticket()
        assert ticket == self.tickets
        self.tickets += 1
        return Call(tenant, ticket)

    @rule(call=calls, samples=st.integers(1, CAPACITY + 2))
    def request_of_a_call(self, call: Call, samples: int) -> None:
        self._start(Request(call.tenant, samples, call.ticket, self.loop.create_future()))

    @rule(tenant=st.sampled_from(TENANTS), samples=st.integers(1, CAPACITY + 2))
    def request_without_a_call(self, tenant: str, samples: int) -> None:
        self._start(Request(tenant, samples, None, self.loop.create_future()))

    def _start(self, r: Request) -> None:
        self.requests.append(r)
        r.task = self.loop.create_task(self._run(r))

    @rule()
    def step(self) -> None:
        self._step()

    @rule(n=st.integers(2, 6))
    def steps(self, n: int) -> None:
        for _ in range(n):
            self._step()

    @precondition(lambda self: bool(self._live()))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """At any point: before it reached the gate, while it waits, in the step of its grant, inside."""
        r = data.draw(st.sampled_from(self._live()))
        assert r.task is not None
        r.cancelled = True
        r.task.cancel()

    @precondition(lambda self: any(r.timeout is not None for r in self._live()))
    @rule(data=st.data())
    def deadline_passes(self, data: st.DataObject) -> None:
        r = data.draw(st.sampled_from([r for r in self._live() if r.timeout is not None]))
        assert r.timeout is not None
        r.cancelled = True
        # Rescheduled from inside the loop (asyncio.Timeout wants a running one): due at once, it
        # fires in the step after the next, like any timer.
        self.loop.call_soon(self._expire, r)

    def _expire(self, r: Request) -> None:
        if r.outcome is None and r.timeout is not None:  # its deadline is still running
            r.timeout.reschedule(0.0)

    @precondition(lambda self: any(r.inside and not r.done.done() for r in self.requests))
    @rule(data=st.data(), fail=st.booleans())
    def finish(self, data: st.DataObject, fail: bool) -> None:
        r = data.draw(st.sampled_from([r for r in self.requests if r.inside and not r.done.done()]))
        if fail:
            r.done.set_exception(EngineFailed())
        else:
            r.done.set_result(None)

    @rule(capacity=st.integers(1, CAPACITY + 2))
    def capacity_changes(self, capacity: int) -> None:
        self.capacity_bound = max(self.capacity_bound, capacity) if self.gate.inflight else capacity
        self.gate.set_capacity(capacity)

    @precondition(lambda self: bool(self._live()))
    @rule()
    def shutdown(self) -> None:
        for r in self._live():
            assert r.task is not None
            r.cancelled = True
            r.task.cancel()

    def _live(self) -> list[Request]:
        return [r for r in self.requests if r.task is not None and not r.task.done() and not r.cancelled]

    @rule()
    def settle(self) -> None:
        """Run the loop until nothing changes; then the books must balance exactly."""
        self._settle()
        self._check_settled()

    # ---- invariants ----------------------------------------------------------------------------------

    @invariant()
    def nothing_unexpected(self) -> None:
        """At every point, settled or not: no error, no queue jumping, and the counts within bounds (a
        request granted or cancelled a moment ago has not run its own code yet)."""
        assert not self.loop_errors, self.loop_errors
        assert not self.violations, self.violations
        assert all(r.outcome in OUTCOMES for r in self.requests if r.outcome is not None), [
            r.outcome for r in self.requests
        ]
        g = self.gate
        unfinished = sum(r.samples for r in self.requests if r.order >= 0 and r.outcome is None)
        assert g.queued >= 0 and sum(r.samples for r in self.requests if r.inside) <= g.inflight
        assert g.queued + g.inflight <= unfinished

    def _check_settled(self) -> None:
        g = self.gate
        inside = [r for r in self.requests if r.inside]
        waiting = self._waiting()
        assert g.inflight == sum(r.samples for r in inside)
        per_tenant = {t: sum(r.samples for r in inside if r.tenant == t) for t in TENANTS}
        assert g.tenant_inflight == {t: n for t, n in per_tenant.items() if n}
        assert g.queued == sum(r.samples for r in waiting)
        assert g.waiting_requests == len(waiting)
        assert not waiting or inside, "requests wait while the gate is empty"
        if not inside:
            self.capacity_bound = g.capacity
        assert g.inflight <= self.capacity_bound or len(inside) == 1
        if not inside and not waiting:
            assert (g.inflight, g.queued, g.tenant_inflight) == (0, 0, {})

    def teardown(self) -> None:
        """Every request still waiting gets in once the holders finish, and the gate ends idle."""
        try:
            self._settle()
            for _ in range(len(self.requests) + 1):
                holding = [r for r in self.requests if r.inside and not r.done.done()]
                if not holding:
                    break
                for r in holding:
                    r.done.set_result(None)
                self._settle()
                self._check_settled()
            assert all(r.outcome is not None for r in self.requests if r.order >= 0), "a request never got in"
            assert (self.gate.inflight, self.gate.queued, self.gate.waiting_requests) == (0, 0, 0)
            self.nothing_unexpected()
        finally:
            tasks = [r.task for r in self.requests if r.task is not None and not r.task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.close()


GateMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWorkGate = GateMachine.TestCase
