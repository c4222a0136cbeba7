"""What the service needs to know about a call, as plain values: :class:`CallContext`.

The HTTP layer reads it from the request's headers once (:mod:`server.api.context`); the service,
and a test, can build one directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


async def _never() -> None:
    await asyncio.Event().wait()


@dataclass(frozen=True)
class CallContext:
    """One call's deadline, dedup key, caller scope and request id.

    Attributes:
        deadline_s: seconds the call waits for its answer (504 after).
        dedup_key: what makes two calls the same job (None: never shared), already scoped to the
            caller and route.
        fingerprint: a digest of the call's body; a key reused with another fingerprint is refused.
        tenant: the caller's scope (a digest of its API key, "" without keys): grouping never mixes
            tenants, and the work gate serves them fairly.
        request_id: the call's id in the logs (the caller's ``X-Request-ID`` when safe); engine request
            ids are the server's own, unique per engine request.
        disconnected: completes when the client hangs up (default: never), which cancels the call.
    """

    deadline_s: float
    request_id: str
    tenant: str = ""
    dedup_key: str | None = None
    fingerprint: str = ""
    disconnected: Callable[[], Awaitable[None]] = _never


def dedup_key(scope: str, idempotency_key: str | None, fingerprint: str, *, identical_bodies: bool) -> str | None:
    """The job key of a call in ``scope`` (tenant and route): its ``Idempotency-Key`` when given, else
    (with ``identical_bodies``) its body's fingerprint, else None (never shared)."""
    if idempotency_key is not None:
        return f"key:{scope}:{idempotency_key}"
    return f"body:{scope}:{fingerprint}" if identical_bodies else None


def body_fingerprint(body: bytes) -> str:
    """A digest of a JSON body that ignores key order and spacing (the raw bytes' when not JSON, or
    when nested too deep to parse here: the route parsed it higher up the stack, so a body just under
    the parser's depth limit fails only here)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):
        return hashlib.sha256(body).hexdigest()
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


async def cancel_on_disconnect(disconnected: Callable[[], Awaitable[None]], work: Awaitable[T]) -> T | None:
    """Run ``work``; if the client disconnects first, cancel it and return None (nobody is listening).

    Cancelling the work aborts its engine requests (as vLLM's ``with_cancellation`` does), so nothing
    keeps generating for nobody.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected())
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
