"""Admission by engine work, fair across tenants (per app, no globals).

An RL step sends hundreds of one-row calls at once, and a trainer's client rarely honours a 429
(OpenRLHF retries five times, 1 s apart, then drops the reward). So the server admits work, not
calls, and queues it as long as the caller's own deadline allows:

* :class:`WorkGate` holds the engine's work: at most ``capacity`` samples (sequences) generate at once,
  the engine's own batch limit (vLLM's ``max_num_seqs``). Engine requests beyond it wait at the gate,
  served by start-time fair queueing across tenants, so one tenant's burst cannot starve another
  tenant's call: a newcomer's request starts at the current virtual time, ahead of the burst's
  backlog. The gate measures how fast its work drains (samples per second while requests wait).
* :class:`Admission` decides per call, at once: a call whose estimated completion (the work ahead of
  it at that drain rate, counting other tenants' work only up to its own tenant's share) does not fit
  its deadline is refused with 429 ``overloaded`` and a ``Retry-After`` computed from the queue; every
  other call is admitted and waits for the engine within its deadline. ``max_calls`` bounds the calls
  held at once, as a memory guard only.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TypeVar

from server.engines.base import GenerationRequest, GenerationResult
from server.serving.errors import APIError

T = TypeVar("T")

RATE_WINDOW_S = 120.0  # drain rate: samples finished over the last two busy minutes (requests waiting)
LATENCY_EWMA = 0.2  # weight of the newest engine request's duration in the running mean


@dataclass
class _Waiter:
    tenant: str
    samples: int
    future: asyncio.Future[None]


class WorkGate:
    """At most ``capacity`` samples in the engine at once; the rest wait, served fairly by tenant.

    Start-time fair queueing over per-tenant FIFO queues: the request at the head of a tenant's queue
    gets a start tag, the later of the gate's virtual time and the finish tag of that tenant's last
    dispatched request; the smallest start tag goes first. A tenant with a backlog has growing tags,
    so a tenant that just arrived is served next; a request cancelled while it waits has no tag yet,
    so it costs its tenant nothing. A request larger than ``capacity`` on its own runs when the
    engine is otherwise idle.

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
        self.tenant_inflight: dict[str, int] = {}
        self.on_wait = on_wait
        self._queues: dict[str, deque[_Waiter]] = {}
        self._heads: list[tuple[float, int, str]] = []  # (start tag, seq, tenant) of each queue's head
        self._head_of: dict[str, tuple[float, int]] = {}  # the live heap entry of each tenant
        self._seq = itertools.count()
        self._virtual = 0.0
        self._finish: dict[str, float] = {}  # per tenant: finish tag of its last dispatched request
        self._latency: float | None = None
        self._busy_clock = 0.0  # seconds spent with requests waiting
        self._busy_since: float | None = None
        self._done: deque[tuple[float, int]] = deque()  # (busy clock, samples) finished while busy
        self._done_samples = 0

    @property
    def waiting_requests(self) -> int:
        return sum(1 for q in self._queues.values() for w in q if not w.future.done())

    def set_capacity(self, capacity: int) -> None:
        """The engine's real batch limit, once it is known (after it started)."""
        self.capacity = max(1, capacity)
        self._dispatch()

    @contextlib.asynccontextmanager
    async def hold(self, tenant: str, samples: int) -> AsyncIterator[None]:
        """Hold ``samples`` of the engine's capacity for the body of the ``async with``."""
        queued_at = time.monotonic()
        self._tick(queued_at)
        waiter = _Waiter(tenant, samples, asyncio.get_running_loop().create_future())
        self._queues.setdefault(tenant, deque()).append(waiter)
        self.queued += samples
        if tenant not in self._head_of:
            self._promote(tenant)
        self._dispatch()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(waiter, queued_at, finished=False)  # granted just as it was cancelled
            else:
                self._tick(time.monotonic())
                self.queued -= samples
                queue = self._queues.get(tenant)
                if queue and queue[0] is waiter:  # its tenant's head: the next one takes its place
                    del self._head_of[tenant]
                    self._promote(tenant)
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

    def _promote(self, tenant: str) -> None:
        """Give the first live request of ``tenant``'s queue its start tag and a place among the heads."""
        queue = self._queues.get(tenant)
        while queue and queue[0].future.done():  # cancelled while waiting
            queue.popleft()
        if not queue:
            self._queues.pop(tenant, None)
            return
        entry = (max(self._virtual, self._finish.get(tenant, 0.0)), next(self._seq))
        self._head_of[tenant] = entry
        heapq.heappush(self._heads, (*entry, tenant))

    def _dispatch(self) -> None:
        while self._heads:
            tag, seq, tenant = self._heads[0]
            if self._head_of.get(tenant) != (tag, seq):  # its request was cancelled or dispatched
                heapq.heappop(self._heads)
                continue
            head = self._queues[tenant][0]
            if self.inflight and self.inflight + head.samples > self.capacity:
                break
            heapq.heappop(self._heads)
            self._queues[tenant].popleft()
            del self._head_of[tenant]
            self._virtual = max(self._virtual, tag)
            self._finish[tenant] = tag + head.samples
            self.queued -= head.samples
            self.inflight += head.samples
            self.tenant_inflight[tenant] = self.tenant_inflight.get(tenant, 0) + head.samples
            head.future.set_result(None)
            self._promote(tenant)
        now = time.monotonic()
        if self.queued and self._busy_since is None:
            self._busy_since = now
        elif not self.queued:
            self._busy_since = None

    def _release(self, waiter: _Waiter, since: float, *, finished: bool) -> None:
        now = time.monotonic()
        self._tick(now)
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


class Admission:
    """Admits calls by the engine work they bring and their deadline (see the module docstring).

    Args:
        gate: the engine's work gate (its drain rate and latency drive the estimate).
        max_calls: calls held at once at most (a memory guard).
        max_wait_s: refuse calls whose estimated wait exceeds this even when their deadline allows it
            (None: the deadline alone decides).
        on_reject: called with the reason of each 429 (``deadline`` or ``calls``), for the metrics.
    """

    def __init__(
        self,
        gate: WorkGate,
        *,
        max_calls: int,
        max_wait_s: float | None = None,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.gate = gate
        self.max_calls = max_calls
        self.max_wait_s = max_wait_s
        self.on_reject = on_reject
        self.calls = 0
        self.outstanding: dict[str, float] = {}  # per tenant: estimated samples of admitted, unfinished calls
        self._tenant_calls: dict[str, int] = {}

    def estimated_wait(self, tenant: str | None = None, samples: float = 0.0) -> float:
        """Seconds until a new call of ``tenant`` bringing ``samples`` would finish, beyond its own run.

        The work ahead of it is its tenant's own outstanding work plus each other tenant's, up to
        what its tenant will have had by then (fair queueing serves the tenants in step), drained at
        the gate's measured rate; with no tenant, all the outstanding work. 0 before the gate has
        measured anything.
        """
        rate = self.gate.drain_rate()
        if not rate:
            return 0.0
        if tenant is None:
            ahead = sum(self.outstanding.values()) + samples
        else:
            mine = self.outstanding.get(tenant, 0.0) + samples
            ahead = mine + sum(min(w, mine) for t, w in self.outstanding.items() if t != tenant)
        return max(0.0, ahead / rate - (self.gate.latency or 0.0))

    @contextlib.contextmanager
    def admit(self, tenant: str, samples: float, deadline_s: float) -> Iterator[None]:
        """Admit a call for the body of the ``with``, or refuse it at once.

        Raises:
            APIError: 429 ``overloaded`` with a ``Retry-After`` when its estimated completion does not
                fit ``deadline_s`` (or ``max_wait_s``), or ``max_calls`` calls are held already.
        """
        if self.calls >= self.max_calls:
            retry = self.gate.latency or 1.0
            self._refuse("calls", retry, f"{self.max_calls} calls are already held (--max-concurrent-requests)")
        wait = self.estimated_wait(tenant, samples)
        run = self.gate.latency or 0.0
        limit = deadline_s if self.max_wait_s is None else min(deadline_s, self.max_wait_s + run)
        # Only the queue is grounds to refuse: a deadline shorter than a mean run on an empty queue
        # is the caller's to try (a small call can be faster than the mean); it gets 504 if not.
        if wait > 0 and wait + run > limit:
            self._refuse(
                "deadline",
                wait + run - limit,
                f"the engine's queue needs about {wait:.0f}s before this call could run, longer than its "
                f"deadline allows ({limit:.0f}s)",
            )
        self.calls += 1
        self.outstanding[tenant] = self.outstanding.get(tenant, 0.0) + samples
        self._tenant_calls[tenant] = self._tenant_calls.get(tenant, 0) + 1
        try:
            yield
        finally:
            self.calls -= 1
            self._tenant_calls[tenant] -= 1
            if self._tenant_calls[tenant]:
                self.outstanding[tenant] -= samples
            else:  # its last call: nothing of it is outstanding (and no rounding is left over)
                del self._tenant_calls[tenant], self.outstanding[tenant]

    def _refuse(self, reason: str, retry_after_s: float, why: str) -> None:
        if self.on_reject is not None:
            self.on_reject(reason)
        raise APIError(429, "overloaded", f"{why}; retry later", retry_after=str(max(1, math.ceil(retry_after_s))))
