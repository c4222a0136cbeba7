"""The engine's work gate: at most ``capacity`` samples generate at once, the rest wait, fairly by tenant.

:class:`WorkGate` sits between the scoring pipeline and the engine (every engine request goes through
:meth:`WorkGate.hold`). Its bookkeeping is a small state machine per waiting request
(:class:`WaiterState`): a request is ``WAITING`` until the dispatcher grants it (``GRANTED``) or it
leaves (``LEFT``: cancelled, past its deadline, shut down), and a granted one is ``DONE`` once its
engine work ended. Each transition happens once and moves the request's samples between ``queued``
and ``inflight`` exactly once; the dispatcher grants only a request that still waits, and settles
one whose task was cancelled (its future is) but whose cleanup has not run yet. So ``inflight``
is always the samples granted and not released, ``queued`` the samples waiting, whatever order
cancellations, deadlines and releases come in.

A call's place in line (:class:`Place`, set by :class:`~server.serving.admission.Admission` in a
context variable that every task of the call inherits) orders its tenant's queue: a call's later
requests (an adaptive call's round 2, a grouped batch the call opened) go before the requests of
calls its tenant sent after it, so a call waits for what admission counted ahead of it, not more.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import heapq
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field

from server.engines.base import GenerationRequest, GenerationResult

RATE_WINDOW_S = 120.0  # drain rate: samples finished over the last two busy minutes (requests waiting)
LATENCY_EWMA = 0.2  # weight of the newest engine request's duration in the running mean


@dataclass(frozen=True)
class Place:
    """A call's place in line, given by admission.

    Attributes:
        ticket: the call's admission order; within a tenant, requests are served by ticket.
        ready_at: when (``time.monotonic()``) admission expects the call's queue wait to end.
    """

    ticket: int
    ready_at: float


current_place: contextvars.ContextVar[Place | None] = contextvars.ContextVar("grm_call_place", default=None)


class WaiterState(enum.Enum):
    """Where a request at the gate is: each moves only forward, WAITING -> GRANTED -> DONE or WAITING -> LEFT."""

    WAITING = "waiting"
    GRANTED = "granted"
    LEFT = "left"
    DONE = "done"


@dataclass(eq=False)
class _Waiter:
    tenant: str
    samples: int
    ticket: int
    future: asyncio.Future[None]
    state: WaiterState = field(default=WaiterState.WAITING)


class WorkGate:
    """At most ``capacity`` samples in the engine at once; the rest wait, served fairly by tenant.

    Start-time fair queueing across tenants: each tenant with requests waiting has one slot with a
    start tag, the later of the gate's virtual time when it began waiting and the finish tag of its
    last dispatched request; the smallest tag goes first. A tenant with a backlog has growing tags, so
    a tenant that just arrived is served next. Within a tenant, requests go by their call's ticket
    (:class:`Place`; a request outside any call takes a fresh one, so first come first served). A
    request larger than ``capacity`` on its own runs when the engine is otherwise idle.

    The drain rate is measured over busy time only (while requests wait, the engine is full), from
    requests that ran to completion: idle gaps between training steps and aborted or failed
    requests do not distort it.

    Args:
        capacity: samples (sequences) the engine batches at once.
        on_wait: called with each request's wait at the gate, in seconds (metrics).
    """

    def __init__(self, capacity: int, on_wait: Callable[[float], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.inflight = 0
        self.queued = 0
        self.waiting_requests = 0
        self.tenant_inflight: dict[str, int] = {}
        self.on_wait = on_wait
        self._tickets = itertools.count()
        self._queues: dict[str, list[tuple[int, int, _Waiter]]] = {}  # per tenant: (ticket, seq, waiter) heap
        self._slots: list[tuple[float, int, str]] = []  # (start tag, seq, tenant) of each waiting tenant
        self._slot_of: dict[str, tuple[float, int]] = {}  # the live slot of each tenant
        self._seq = itertools.count()
        self._virtual = 0.0
        self._finish: dict[str, float] = {}  # per tenant: finish tag of its last dispatched request
        self._latency: float | None = None
        self._busy_clock = 0.0  # seconds spent with requests waiting
        self._busy_since: float | None = None
        self._done: deque[tuple[float, int]] = deque()  # (busy clock, samples) finished while busy
        self._done_samples = 0

    def take_ticket(self) -> int:
        """The next place in line (admission gives one to each call)."""
        return next(self._tickets)

    def set_capacity(self, capacity: int) -> None:
        """The engine's real batch limit, once it is known (after it started)."""
        self.capacity = max(1, capacity)
        self._dispatch()

    @contextlib.asynccontextmanager
    async def hold(self, tenant: str, samples: int, ticket: int | None = None) -> AsyncIterator[None]:
        """Hold ``samples`` of the engine's capacity for the body of the ``async with``.

        ``ticket`` orders the request within its tenant's queue (default: its call's :class:`Place`,
        else a fresh ticket). Cancelling the waiting task takes the request out of the queue.
        """
        if ticket is None:
            place = current_place.get()
            ticket = place.ticket if place is not None else self.take_ticket()
        queued_at = time.monotonic()
        waiter = _Waiter(tenant, samples, ticket, asyncio.get_running_loop().create_future())
        self._tick(queued_at)
        heapq.heappush(self._queues.setdefault(tenant, []), (ticket, next(self._seq), waiter))
        self.queued += samples
        self.waiting_requests += 1
        if tenant not in self._slot_of:
            self._open_slot(tenant)
        self._dispatch()
        try:
            await waiter.future
        except BaseException:  # cancelled: a deadline, a client that left, shutdown
            if waiter.state is WaiterState.GRANTED:
                self._release(waiter, queued_at, finished=False)  # granted in the step it was cancelled
            else:
                if waiter.state is WaiterState.WAITING:
                    self._leave(waiter)
                if self._head(tenant) is None:  # nothing of its tenant waits: its slot closes
                    self._slot_of.pop(tenant, None)
                self._dispatch()
            raise
        if self.on_wait is not None:
            self.on_wait(time.monotonic() - queued_at)
        granted_at = time.monotonic()
        try:
            yield
        except BaseException:
            self._release(waiter, granted_at, finished=False)  # aborted or failed: says nothing of the rate
            raise
        self._release(waiter, granted_at, finished=True)

    def _tick(self, now: float) -> None:
        """Advance the busy clock to ``now`` (call before ``queued`` changes)."""
        if self._busy_since is not None:
            self._busy_clock += now - self._busy_since
            self._busy_since = now

    def _open_slot(self, tenant: str) -> None:
        entry = (max(self._virtual, self._finish.get(tenant, 0.0)), next(self._seq))
        self._slot_of[tenant] = entry
        heapq.heappush(self._slots, (*entry, tenant))

    def _leave(self, waiter: _Waiter) -> None:
        """WAITING -> LEFT: its samples stop counting as queued (it stays in the heap until it surfaces)."""
        self._tick(time.monotonic())
        waiter.state = WaiterState.LEFT
        self.queued -= waiter.samples
        self.waiting_requests -= 1

    def _head(self, tenant: str) -> _Waiter | None:
        """The first request of ``tenant`` that still waits; those that left are dropped on the way, and
        one whose task was cancelled (its cleanup runs a loop step later) is settled as left now."""
        queue = self._queues.get(tenant)
        while queue:
            waiter = queue[0][2]
            if waiter.state is WaiterState.WAITING and not waiter.future.done():
                return waiter
            heapq.heappop(queue)
            if waiter.state is WaiterState.WAITING:
                self._leave(waiter)
        self._queues.pop(tenant, None)
        return None

    def _dispatch(self) -> None:
        while self._slots:
            tag, seq, tenant = self._slots[0]
            if self._slot_of.get(tenant) != (tag, seq):  # a closed slot
                heapq.heappop(self._slots)
                continue
            head = self._head(tenant)
            if head is None:
                heapq.heappop(self._slots)
                del self._slot_of[tenant]
                continue
            if self.inflight and self.inflight + head.samples > self.capacity:
                break
            heapq.heappop(self._slots)
            heapq.heappop(self._queues[tenant])
            del self._slot_of[tenant]
            self._virtual = max(self._virtual, tag)
            self._finish[tenant] = tag + head.samples
            self._grant(head)
            if self._head(tenant) is not None:
                self._open_slot(tenant)
        now = time.monotonic()
        if self.queued and self._busy_since is None:
            self._busy_since = now
        elif not self.queued:
            self._busy_since = None

    def _grant(self, waiter: _Waiter) -> None:
        """WAITING -> GRANTED (only a waiter whose future is still pending gets here)."""
        self._tick(time.monotonic())
        waiter.state = WaiterState.GRANTED
        self.queued -= waiter.samples
        self.waiting_requests -= 1
        self.inflight += waiter.samples
        self.tenant_inflight[waiter.tenant] = self.tenant_inflight.get(waiter.tenant, 0) + waiter.samples
        waiter.future.set_result(None)

    def _release(self, waiter: _Waiter, since: float, *, finished: bool) -> None:
        """GRANTED -> DONE: its samples leave the engine."""
        now = time.monotonic()
        self._tick(now)
        waiter.state = WaiterState.DONE
        self.inflight -= waiter.samples
        left = self.tenant_inflight[waiter.tenant] - waiter.samples
        if left:
            self.tenant_inflight[waiter.tenant] = left
        else:
            del self.tenant_inflight[waiter.tenant]
        if finished:
            took = now - since
            self._latency = took if self._latency is None else (1 - LATENCY_EWMA) * self._latency + LATENCY_EWMA * took
            if self.queued:  # the engine was full: this is what its throughput looks like
                self._done.append((self._busy_clock, waiter.samples))
                self._done_samples += waiter.samples
                while self._done[0][0] < self._busy_clock - RATE_WINDOW_S:
                    self._done_samples -= self._done.popleft()[1]
        self._dispatch()

    def gated(
        self, generate: Callable[[GenerationRequest], Awaitable[GenerationResult]]
    ) -> Callable[[GenerationRequest], Coroutine[object, object, GenerationResult]]:
        """``generate`` with each request holding its ``n`` samples of the gate while it runs."""

        async def run(request: GenerationRequest) -> GenerationResult:
            async with self.hold(request.tenant, request.n):
                return await generate(request)

        return run

    def drain_rate(self) -> float | None:
        """Samples per second the engine finishes when full: measured over busy time, else ``capacity``
        per mean request duration; None before anything finished."""
        if len(self._done) >= 2 and self._done[-1][0] - self._done[0][0] >= 1.0:
            span = self._done[-1][0] - self._done[0][0]
            return (self._done_samples - self._done[0][1]) / span
        if self._latency:
            return self.capacity / self._latency
        return None

    @property
    def latency(self) -> float | None:
        """Mean duration of an engine request once it got through the gate (recent ones weigh most)."""
        return self._latency
