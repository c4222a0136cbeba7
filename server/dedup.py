"""One job per distinct request: retries attach to the running job or get its recent answer.

A trainer that times out and retries (OpenRLHF retries ``/get_reward`` up to 5 times, 1 s apart)
would otherwise start the whole k-sample job again beside the first one. :class:`Dedup` keys jobs
(by ``Idempotency-Key`` or by the request body, :mod:`server.serving` decides) and:

* while a job runs, a request with the same key waits for it instead of starting another;
* when every waiter has gone (their clients disconnected), the job carries on for ``linger_s`` so a
  retry can still attach, and is cancelled (its engine work aborted) if none comes;
* a finished job's result is kept for ``ttl_s`` in a cache of at most ``max_entries``, so a retry that
  arrives just after the answer was lost in transit gets it at once. Failures are never cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
How = Literal["new", "inflight", "cached"]


@dataclass
class _Running(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0
    reaper: asyncio.TimerHandle | None = None


class Dedup(Generic[T]):
    """Runs at most one job per key at a time and remembers finished results for a while.

    Args:
        ttl_s: how long a finished result answers repeats (0: not at all).
        max_entries: finished results kept at most (oldest dropped first).
        linger_s: how long a job with no one waiting keeps running for a retry to attach.
    """

    def __init__(self, *, ttl_s: float, max_entries: int, linger_s: float) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.linger_s = linger_s
        self._running: dict[str, _Running[T]] = {}
        self._done: OrderedDict[str, tuple[float, T]] = OrderedDict()

    @property
    def running(self) -> int:
        return len(self._running)

    def _cached(self, key: str) -> tuple[bool, T | None]:
        entry = self._done.get(key)
        if entry is None:
            return False, None
        expires, value = entry
        if time.monotonic() >= expires:
            del self._done[key]
            return False, None
        return True, value

    def _remember(self, key: str, value: T) -> None:
        if self.ttl_s <= 0 or self.max_entries <= 0:
            return
        self._done[key] = (time.monotonic() + self.ttl_s, value)
        self._done.move_to_end(key)
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)

    async def run(
        self, key: str | None, job: Callable[[], Awaitable[T]], *, timeout: float | None = None
    ) -> tuple[T, How]:
        """The result of ``job`` for ``key``, and whether it was new, joined in flight, or cached.

        With ``key=None`` the job simply runs (cancelled with its caller). A caller cancelled while
        waiting (its client went away) leaves the job lingering for a retry; a caller whose
        ``timeout`` passes leaves it cancelled at once when nobody else waits.

        Raises:
            TimeoutError: when ``timeout`` seconds pass before the job finishes.
            Whatever the job raises (every waiter of a failed job gets the same exception).
        """
        if key is None:
            async with asyncio.timeout(timeout):
                return await job(), "new"  # cancelled with its caller
        hit, value = self._cached(key)
        if hit:
            return value, "cached"  # type: ignore[return-value]
        running = self._running.get(key)
        how: How = "inflight"
        if running is None:
            running = _Running(asyncio.ensure_future(self._run_job(key, job)))
            running.task.add_done_callback(_consume)  # a job that fails after its waiters left
            self._running[key] = running
            how = "new"
        if running.reaper is not None:
            running.reaper.cancel()
            running.reaper = None
        running.waiters += 1
        timed_out = False
        try:
            return await asyncio.wait_for(asyncio.shield(running.task), timeout), how
        except TimeoutError:
            timed_out = True
            raise
        finally:
            running.waiters -= 1
            if running.waiters == 0 and not running.task.done():
                if timed_out or self.linger_s <= 0:
                    self._cancel(key, running)
                    # Return only once the job has unwound: its engine work aborted, its slot released.
                    await asyncio.wait({running.task})
                else:
                    self._orphaned(key, running)

    async def _run_job(self, key: str, job: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await job()
        finally:
            # Only this job's own entry: a cancelled job may unwind after a retry started the next one.
            running = self._running.get(key)
            if running is not None and running.task is asyncio.current_task():
                del self._running[key]
        self._remember(key, value)
        return value

    def _orphaned(self, key: str, running: _Running[T]) -> None:
        """Nobody waits any more: cancel after ``linger_s`` unless a retry attaches."""
        loop = asyncio.get_running_loop()
        running.reaper = loop.call_later(self.linger_s, self._cancel, key, running)

    def _cancel(self, key: str, running: _Running[T]) -> None:
        if running.waiters == 0 and not running.task.done():
            running.task.cancel()
            if self._running.get(key) is running:
                del self._running[key]


def _consume(task: asyncio.Task[T]) -> None:
    """Retrieve a cancelled or failed job's outcome so asyncio does not log it as never retrieved."""
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
