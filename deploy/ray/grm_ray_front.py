"""The Ray front's HTTP app: grm-serve's own checks first, then the body, then the replica its key picks.

Ray's HTTP proxy hands every call to the front deployment (``grm_ray_app.GRMFront``), which must read
the body to compute its routing key. Before it reads a byte of body it checks what grm-serve itself
checks, with the same settings the replicas get and the same middleware
(:func:`server.api.middleware.add_edge_checks`):

* the API key (``Authorization: Bearer`` or ``?api_key=``; health, docs and, with ``metrics_public``,
  ``/metrics`` are open): 401 ``unauthorized``;
* the body limit (``max_body_bytes``): a ``Content-Length`` over it is 413 ``too_large`` at once; a
  body without one is counted as it arrives and cut off with 413 at the chunk that passes the limit;
* the bytes of bodies the front replica holds at once, read or waiting for their replica's answer
  (``front_buffer_mib``): a call that would pass it is refused with 429 ``overloaded`` and
  ``Retry-After``, before its body is read when it declares its length. Refused at once rather than
  queued: while a call is open, Ray's proxy and the front's receive loop keep pulling its body into
  memory whether or not the app reads it, so only ending the call bounds what the front holds;
  trainers' clients retry a 429 after ``Retry-After`` (grm-client, OpenRLHF, slime).

Whatever fails answers grm-serve's error body (``{"error": {"type", "message", "code"}}``), never
Ray's bare 500: a body the routing key cannot read is forwarded under its digest and the replica
answers it as grm-serve does (400 ``invalid_request`` for JSON nested past the parser's limit).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request, Response
from grm_ray_routing import ServerDefaults, routing_key
from ray.exceptions import ActorUnavailableError, RayActorError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.errors import CLIENT_CLOSED, error_response, install_error_handlers
from server.api.middleware import add_edge_checks
from server.config import Settings

log = logging.getLogger(__name__)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Hop-by-hop and length headers the forwarding hop sets itself.
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
DEFAULT_BUFFER_MIB = 1024
RETRY_AFTER_S = "1"


class BodyBudget:
    """The bytes of request bodies one front replica holds at once (one event loop: no lock).

    Args:
        limit: bytes held at most.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> bool:
        """Hold ``n`` more bytes if they fit; False (nothing held) if not."""
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        """Release ``n`` bytes taken earlier."""
        self.held -= n


class BelowRoutePrefix:
    """Hands the app the path below the Ray app's ``route_prefix`` (Ray puts the prefix in
    ``root_path`` and keeps it in ``path``), the path grm-serve's app sees: the open paths of the key
    check and the forwarded route are then the server's own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        if scope["type"] == "http" and root and scope["path"].startswith(root):
            scope = {**scope, "path": scope["path"][len(root) :] or "/", "root_path": ""}
        await self.app(scope, receive, send)


def _overloaded(budget: BodyBudget) -> Response:
    message = f"the front holds {budget.limit} bytes of request bodies at most; retry"
    return error_response(429, "overloaded", message, retry_after=RETRY_AFTER_S)


def build_front_app(settings: Settings, backend: Any, *, buffer_bytes: int) -> ASGIApp:
    """The front's ASGI app: checks, a bounded body read, then the call forwarded through ``backend``.

    Args:
        settings: the grm-serve settings the replicas run with (keys, body limit, ``metrics_public``).
        backend: the grm-serve deployment's handle (``.options(multiplexed_model_id=key)
            .forward.remote(method, path, query, headers, body)``, awaited for
            ``(status, headers, body)``).
        buffer_bytes: bytes of request bodies held at once (at least ``settings.max_body_bytes``).

    Raises:
        ValueError: if ``buffer_bytes`` cannot hold one body of ``settings.max_body_bytes``, or the
            API key file cannot be read.
    """
    if buffer_bytes < settings.max_body_bytes:
        raise ValueError(f"front_buffer_mib must hold one body of max_body_bytes={settings.max_body_bytes} bytes")
    budget = BodyBudget(buffer_bytes)
    defaults = ServerDefaults.of(settings)  # the routing key resolves options as the replicas will
    app = FastAPI(title="grm-serve front (Ray Serve)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.budget = budget
    install_error_handlers(app)  # a 413 raised while reading, and any failure, in grm-serve's body

    @app.api_route("/{path:path}", methods=METHODS)
    async def route(request: Request, path: str) -> Response:
        declared = request.headers.get("content-length", "")
        held = int(declared) if declared.isdigit() else 0  # at most max_body_bytes: checked outside
        if not budget.take(held):
            return _overloaded(budget)
        try:
            chunks, size = [], 0
            async for chunk in request.stream():  # the body limit cuts it off with a 413 here
                size += len(chunk)
                if size > held:
                    if not budget.take(size - held):
                        return _overloaded(budget)
                    held = size
                chunks.append(chunk)
            body = b"".join(chunks)
            del chunks
            return await _forward(backend, request, "/" + path, body, defaults)
        except ClientDisconnect:
            return Response(status_code=CLIENT_CLOSED)  # never delivered: the caller has gone
        finally:
            budget.give(held)

    add_edge_checks(app, settings)
    return BelowRoutePrefix(app)


async def _forward(backend: Any, request: Request, route: str, body: bytes, defaults: ServerDefaults) -> Response:
    headers = {k.lower(): v for k, v in request.headers.items()}
    # Every call carries a routing key: calls with no affinity get a key of their own, so Ray's
    # routing loop never hands them a replica that was found for a keyed call (or the reverse).
    key = routing_key(request.method, route, headers, request.url.query, body, defaults) or f"any:{uuid.uuid4().hex}"
    forwarded = [(k, v) for k, v in request.headers.raw if k.lower().decode("latin-1") not in HOP_HEADERS]
    try:
        answer = await backend.options(multiplexed_model_id=key).forward.remote(
            request.method, route, request.url.query, forwarded, body
        )
    except (RayActorError, ActorUnavailableError, asyncio.CancelledError) as exc:
        current = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and current is not None and current.cancelling():
            raise  # the client left: the call is cancelled, here and on the replica
        # The replica holding the call died (its call is failed or cancelled under us): the trainers'
        # clients retry a 503, and the retry's key now ranks a live replica first.
        log.warning("a replica went away during %s %s: %r", request.method, route, exc)
        return error_response(503, "not_ready", "the replica serving this call went away; retry", RETRY_AFTER_S)
    except Exception:
        log.exception("forwarding %s %s failed", request.method, route)
        return error_response(500, "internal_error", "internal error")
    status, answer_headers, content = answer
    response = Response(content=content, status_code=status)
    response.raw_headers = [(k, v) for k, v in answer_headers if k.lower().decode("latin-1") not in HOP_HEADERS]
    response.raw_headers.append((b"content-length", str(len(content)).encode()))
    return response
