"""One job per distinct request: retries attach to the running job or get its recent answer.

A trainer that times out and retries (OpenRLHF retries ``/get_reward`` up to 5 times, 1 s apart)
would otherwise start the whole k-sample job again beside the first one. :class:`Dedup` keys jobs
(:mod:`server.serving.service` builds the key from the caller's tenant, the route and its ``Idempotency-Key``
or body) and, after Stripe's idempotency keys, remembers each key with a **fingerprint** of the
request it was first used with:

* while a job runs, a request with the same key and fingerprint waits for it instead of starting
  another; each waiter waits only until its own deadline;
* a key reused with another fingerprint is refused (:class:`KeyReusedError`): never the other
  request's answer;
* when every waiter has gone (their clients disconnected or their deadlines passed), the job carries
  on for ``linger_s`` so a retry can still attach, and is cancelled (its engine work aborted) if none
  comes;
* a finished job's result is kept for ``ttl_s`` in a cache bounded by entries and by estimated bytes,
  so a retry that arrives just after the answer was lost in transit gets it at once. Failures are
  never cached. When the cache is full, the oldest entry of the scope (tenant) holding the most is
  dropped: one tenant's burst evicts its own results, not another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
How = Literal["new", "inflight", "cached"]
_ENTRY_OVERHEAD = 400  # the entry record, its fingerprint and the dicts' slots (bytes, rounded up)


class KeyReusedError(Exception):
    """A key was sent again with a request other than the one it was first used with."""


class JobCancelledError(Exception):
    """The job was cancelled under a waiter that still wanted it (the server is shutting down)."""


@dataclass
class _Running(Generic[T]):
    fingerprint: str
    task: asyncio.Task[T]
    waiters: int = 0
    reaper: asyncio.TimerHandle | None = None


@dataclass(frozen=True)
class _Done(Generic[T]):
    expires: float
    fingerprint: str
    value: T
    size: int
    scope: str


class Dedup(Generic[T]):
    """Runs at most one job per key at a time and remembers finished results for a while.

    Args:
        ttl_s: how long a finished result answers repeats (0: not at all).
        max_entries: finished results kept at most (oldest dropped first).
        max_bytes: estimated bytes of the finished results kept at most (oldest dropped first); a
            result larger than this on its own is not kept.
        linger_s: how long a job with no one waiting keeps running for a retry to attach.
        size_of: the estimated size in bytes of a result.
    """

    def __init__(
        self,
        *,
        ttl_s: float,
        max_entries: int,
        linger_s: float,
        max_bytes: int = 1 << 62,
        size_of: Callable[[T], int] = lambda _: 0,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self.size_of = size_of
        self._running: dict[str, _Running[T]] = {}
        self._done: dict[str, _Done[T]] = {}
        self._scopes: dict[str, OrderedDict[str, None]] = {}  # per scope: its keys, oldest first
        self._scope_bytes: dict[str, int] = {}
        self._bytes = 0
        self._closed = False

    @property
    def running(self) -> int:
        """Jobs running now (waited for or lingering)."""
        return len(self._running)

    @property
    def waiters(self) -> int:
        """Requests waiting for a running job now."""
        return sum(r.waiters for r in self._running.values())

    @property
    def cached(self) -> int:
        """Finished results kept."""
        return len(self._done)

    @property
    def cached_bytes(self) -> int:
        """Estimated bytes of the finished results kept."""
        return self._bytes

    def _cached(self, key: str) -> _Done[T] | None:
        entry = self._done.get(key)
        if entry is not None and time.monotonic() >= entry.expires:
            self._drop(key)
            return None
        return entry

    def _drop(self, key: str) -> None:
        entry = self._done.pop(key)
        self._bytes -= entry.size
        keys = self._scopes[entry.scope]
        del keys[key]
        self._scope_bytes[entry.scope] -= entry.size
        if not keys:
            del self._scopes[entry.scope], self._scope_bytes[entry.scope]

    def _remember(self, key: str, fingerprint: str, value: T, scope: str) -> None:
        if self.ttl_s <= 0 or self.max_entries <= 0:
            return
        size = self.size_of(value) + sys.getsizeof(key) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        if key in self._done:
            self._drop(key)
        self._done[key] = _Done(time.monotonic() + self.ttl_s, fingerprint, value, size, scope)
        self._scopes.setdefault(scope, OrderedDict())[key] = None
        self._scope_bytes[scope] = self._scope_bytes.get(scope, 0) + size
        self._bytes += size
        while len(self._done) > self.max_entries or self._bytes > self.max_bytes:
            by_count = len(self._done) > self.max_entries
            # The scope holding the most (entries or bytes, whichever bound is exceeded) gives up its oldest.
            heaviest = max(self._scopes, key=lambda sc: len(self._scopes[sc]) if by_count else self._scope_bytes[sc])
            self._drop(next(iter(self._scopes[heaviest])))

    async def run(
        self,
        key: str | None,
        job: Callable[[], Awaitable[T]],
        *,
        fingerprint: str = "",
        scope: str = "",
        timeout: float | None = None,
    ) -> tuple[T, How]:
        """The result of ``job`` for ``key``, and whether it was new, joined in flight, or cached.

        With ``key=None`` the job simply runs, bounded by ``timeout`` and cancelled with its caller.
        A caller that stops waiting, because it was cancelled (its client went away) or its own
        ``timeout`` passed, leaves the job lingering for a retry when nobody else waits.

        ``scope`` names whose result it is (the tenant) when the cache must make room.

        Raises:
            KeyReusedError: ``key`` is running or cached for another ``fingerprint``.
            TimeoutError: when ``timeout`` seconds pass before the job finishes.
            JobCancelledError: the job was cancelled while this caller still waited, or the dedup was
                closed (:meth:`close`).
            Whatever the job raises (every waiter of a failed job gets the same exception).
        """
        if self._closed:
            raise JobCancelledError(key)
        if key is None:
            async with asyncio.timeout(timeout):
                return await job(), "new"  # cancelled with its caller
        done = self._cached(key)
        if done is not None:
            if done.fingerprint != fingerprint:
                raise KeyReusedError(key)
            self._scopes[done.scope].move_to_end(key)
            return done.value, "cached"
        running = self._running.get(key)
        how: How = "inflight"
        if running is not None and running.fingerprint != fingerprint:
            raise KeyReusedError(key)
        if running is None:
            running = _Running(fingerprint, asyncio.ensure_future(self._run_job(key, fingerprint, scope, job)))
            running.task.add_done_callback(_consume)  # a job that fails after its waiters left
            self._running[key] = running
            how = "new"
        if running.reaper is not None:
            running.reaper.cancel()
            running.reaper = None
        running.waiters += 1
        try:
            finished, _ = await asyncio.wait({running.task}, timeout=timeout)
        finally:
            running.waiters -= 1
            if running.waiters == 0 and not running.task.done():
                await self._orphaned(key, running)
        if not finished:
            raise TimeoutError
        if running.task.cancelled():
            raise JobCancelledError(key)
        return running.task.result(), how

    async def _run_job(self, key: str, fingerprint: str, scope: str, job: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await job()
        finally:
            # Only this job's own entry: a cancelled job may unwind after a retry started the next one.
            running = self._running.get(key)
            if running is not None and running.task is asyncio.current_task():
                del self._running[key]
        self._remember(key, fingerprint, value, scope)
        return value

    async def _orphaned(self, key: str, running: _Running[T]) -> None:
        """Nobody waits any more: cancel after ``linger_s`` unless a retry attaches."""
        if self.linger_s > 0:
            running.reaper = asyncio.get_running_loop().call_later(self.linger_s, self._cancel, key, running)
            return
        self._cancel(key, running)
        # Return only once the job has unwound: its engine work aborted, its slot released.
        await asyncio.wait({running.task})

    def _cancel(self, key: str, running: _Running[T]) -> None:
        if running.waiters == 0 and not running.task.done():
            running.task.cancel()
            if self._running.get(key) is running:
                del self._running[key]

    async def close(self) -> None:
        """Cancel every running job and refuse new ones (shutdown); waiters get :class:`JobCancelledError`."""
        self._closed = True
        jobs = list(self._running.values())
        self._running.clear()
        for running in jobs:
            if running.reaper is not None:
                running.reaper.cancel()
            running.task.cancel()
        if jobs:
            await asyncio.wait({r.task for r in jobs})


def _consume(task: asyncio.Task[T]) -> None:
    """Retrieve a cancelled or failed job's outcome so asyncio does not log it as never retrieved."""
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
