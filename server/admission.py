"""Admission control and cancellation on disconnect (per app, no globals).

* :class:`Admission` bounds the requests scoring at once. A request waits for a slot at most
  ``max_queue_wait_s``; past that it is refused with 429 ``overloaded`` and a ``Retry-After``, so a
  trainer backs off instead of piling up work the server cannot finish in time.
* :func:`cancel_on_disconnect` races a handler against the client's disconnect: when the client goes
  away, the handler's task is cancelled, which aborts its engine requests (as vLLM's
  ``with_cancellation`` does), so nothing keeps generating for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from starlette.requests import Request

from server.errors import APIError

T = TypeVar("T")


class Admission:
    """At most ``limit`` requests hold a slot; others wait up to ``max_wait_s`` for one."""

    def __init__(self, limit: int, max_wait_s: float) -> None:
        self.limit = limit
        self.max_wait_s = max_wait_s
        self._slots = asyncio.Semaphore(limit)
        self.waiting = 0

    @property
    def in_use(self) -> int:
        return self.limit - self._slots._value

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the body of the ``async with``.

        Raises:
            APIError: 429 ``overloaded`` when no slot frees up within ``max_wait_s``.
        """
        self.waiting += 1
        try:
            async with asyncio.timeout(self.max_wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise APIError(
                429,
                "overloaded",
                f"all {self.limit} request slots stayed busy for {self.max_wait_s:g}s; retry later",
                retry_after=str(max(1, round(self.max_wait_s))),
            ) from None
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()


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
