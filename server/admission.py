"""Admission by engine work, fair across tenants, and cancellation on disconnect (per app, no globals).

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
* :func:`cancel_on_disconnect` races a handler against the client's disconnect: when the client goes
  away, the handler's task is cancelled, which aborts its engine requests (as vLLM's
  ``with_cancellation`` does), so nothing keeps generating for nobody.
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
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request

from server.engines.base import GenerationRequest, GenerationResult
from server.errors import APIError

T = TypeVar("T")

RATE_WINDOW_S = 120.0  # drain rate: samples finished over the last two minutes of a busy gate
LATENCY_EWMA = 0.2  # weight of the newest engine request's duration in the running mean


@dataclass(order=True)
class _Waiter:
    start_tag: float
    seq: int
    tenant: str = field(compare=False)
    samples: int = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


class WorkGate:
    """At most ``capacity`` samples in the engine at once; the rest wait, served fairly by tenant.

    Start-time fair queueing: a request's start tag is the later of the gate's virtual time and its
    tenant's last finish tag; the smallest start tag goes first. A tenant with a backlog has growing
    tags, so a tenant that just arrived is served next. A request larger than ``capacity`` on its own
    runs when the engine is otherwise idle.

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
        self._heap: list[_Waiter] = []
        self._seq = itertools.count()
        self._virtual = 0.0
        self._finish: dict[str, float] = {}
        self._done: deque[tuple[float, int]] = deque()  # (time, samples) finished while others waited
        self._latency: float | None = None
        self.on_wait = on_wait

    @property
    def waiting_requests(self) -> int:
        return sum(1 for w in self._heap if not w.future.done())

    def set_capacity(self, capacity: int) -> None:
        """The engine's real batch limit, once it is known (after it started)."""
        self.capacity = max(1, capacity)
        self._dispatch()

    @contextlib.asynccontextmanager
    async def hold(self, tenant: str, samples: int) -> AsyncIterator[None]:
        """Hold ``samples`` of the engine's capacity for the body of the ``async with``."""
        queued_at = time.monotonic()
        start = max(self._virtual, self._finish.get(tenant, 0.0))
        self._finish[tenant] = start + samples
        waiter = _Waiter(start, next(self._seq), tenant, samples, asyncio.get_running_loop().create_future())
        heapq.heappush(self._heap, waiter)
        self.queued += samples
        self._dispatch()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(waiter, queued_at, finished=False)  # granted just as it was cancelled
            else:
                self.queued -= samples  # its heap entry is skipped when it comes up
                self._dispatch()
            raise
        if self.on_wait is not None:
            self.on_wait(time.monotonic() - queued_at)
        granted_at = time.monotonic()
        try:
            yield
        finally:
            self._release(waiter, granted_at, finished=True)

    def _dispatch(self) -> None:
        while self._heap:
            head = self._heap[0]
            if head.future.done():  # cancelled while waiting
                heapq.heappop(self._heap)
                continue
            if self.inflight and self.inflight + head.samples > self.capacity:
                return
            heapq.heappop(self._heap)
            self._virtual = max(self._virtual, head.start_tag)
            self.queued -= head.samples
            self.inflight += head.samples
            self.tenant_inflight[head.tenant] = self.tenant_inflight.get(head.tenant, 0) + head.samples
            head.future.set_result(None)

    def _release(self, waiter: _Waiter, since: float, *, finished: bool) -> None:
        now = time.monotonic()
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
                self._done.append((now, waiter.samples))
        while self._done and self._done[0][0] < now - RATE_WINDOW_S:
            self._done.popleft()
        if not self._heap:
            self._finish.clear()  # nothing waits: every tenant starts afresh at the virtual time
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
        """Samples per second the engine finishes when full: measured while requests waited, else
        ``capacity`` per mean request duration; None before anything finished."""
        if len(self._done) >= 2 and self._done[-1][0] - self._done[0][0] >= 1.0:
            span = self._done[-1][0] - self._done[0][0]
            return sum(s for _, s in list(self._done)[1:]) / span
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
        if wait + run > limit:
            self._refuse(
                "deadline",
                wait + run - limit,
                f"the engine's queue needs about {wait:.0f}s before this call could run, longer than its "
                f"deadline allows ({limit:.0f}s)",
            )
        self.calls += 1
        self.outstanding[tenant] = self.outstanding.get(tenant, 0.0) + samples
        try:
            yield
        finally:
            self.calls -= 1
            left = self.outstanding[tenant] - samples
            if left > 1e-9:
                self.outstanding[tenant] = left
            else:
                del self.outstanding[tenant]

    def _refuse(self, reason: str, retry_after_s: float, why: str) -> None:
        if self.on_reject is not None:
            self.on_reject(reason)
        raise APIError(429, "overloaded", f"{why}; retry later", retry_after=str(max(1, math.ceil(retry_after_s))))


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T | None:
    """Run ``work``; if the client disconnects first, cancel it and return None (nobody is listening)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None
