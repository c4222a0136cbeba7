"""ASGI middleware: request ids, the body size limit, API keys (pure ASGI, so streaming stays intact)."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.errors import error_response

if TYPE_CHECKING:
    from server.config import Settings

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIdMiddleware:
    """Use the caller's ``X-Request-ID`` when it is safe, else a new one; echo it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _SAFE_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((REQUEST_ID_HEADER.encode(), request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyLimitMiddleware:
    """Answer 413 ``too_large`` for bodies over ``max_bytes``, declared or streamed.

    A declared ``Content-Length`` is refused before reading; a streamed body is counted as it
    arrives and the read fails with an HTTP 413 (FastAPI passes HTTP exceptions through unchanged).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(413, "too_large", self._message())
            await response(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"request body exceeds {self.max_bytes} bytes"


OPEN_PATHS = frozenset({"/health/live", "/health/ready", "/docs", "/openapi.json", "/docs/oauth2-redirect"})


QUERY_KEY = "api_key"  # ?api_key=KEY, for clients that cannot send an Authorization header
TENANT_STATE = "tenant"  # scope["state"] entry naming the caller's key space; "" without API keys


def tenant_of(key: bytes) -> str:
    """The tenant id of an API key: a digest, so the key itself is never kept beside the cache."""
    return hashlib.sha256(b"grm-serve tenant\0" + key).hexdigest()[:32]


class APIKeyMiddleware:
    """Require ``Authorization: Bearer <key>`` for every route but ``open_paths`` (health, API docs).

    Keys are compared in constant time, and against every configured key, so neither timing nor
    the position of a key in the list tells a caller anything. An accepted call's tenant (a digest of
    the key it matched) goes to ``scope["state"]["tenant"]``: dedup and grouping never share work
    between tenants. Without API keys every caller is the one tenant ``""``.

    Trainers whose reward client cannot send headers (OpenRLHF's ``--reward.remote_url``, slime's
    ``--rm-url``) may put the key in the URL instead: ``/get_reward?api_key=KEY``. The access log
    records paths without their query, so the key stays out of the logs.
    """

    def __init__(self, app: ASGIApp, keys: frozenset[str], open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.open_paths = open_paths

    def _presented(self, scope: Scope) -> bytes | None:
        """The key a call presents: its ``Authorization: Bearer`` header, else its ``api_key`` query."""
        header = dict(scope["headers"]).get(b"authorization")
        if header is not None:
            scheme, _, presented = header.partition(b" ")
            return presented.strip() if scheme.lower() == b"bearer" else None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), encoding="utf-8")
        values = query.get(QUERY_KEY)
        return values[0].encode("utf-8", "surrogateescape") if values and len(values) == 1 else None

    def _match(self, presented: bytes | None) -> bytes | None:
        """The configured key presented, or None."""
        if not presented:
            return None
        matched = None
        for key in self.keys:  # every key, in constant time each: no early exit
            if hmac.compare_digest(presented, key):
                matched = key
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        key = self._match(self._presented(scope))
        if key is None:
            response = error_response(401, "unauthorized", "missing or invalid API key (Authorization: Bearer <key>)")
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[TENANT_STATE] = tenant_of(key)
        await self.app(scope, receive, send)


def add_edge_checks(app: Starlette, settings: Settings) -> frozenset[str] | None:
    """Add the checks a call passes before its body is read: the API key (when keys are set), then
    the body limit, so a caller without a key is answered 401 before it sends a byte of body.

    grm-serve's app and the Ray front (``deploy/ray``) both call this, so they check alike.

    Returns:
        The paths open without a key (health, API docs, and ``/metrics`` unless ``metrics_public`` is
        off) when API keys are set; None when they are not.

    Raises:
        ValueError: if ``api_key_file`` cannot be read.
    """
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)  # added first: runs inside
    keys = settings.resolved_api_keys()
    if not keys:
        return None
    open_paths = OPEN_PATHS | {"/metrics"} if settings.metrics_public else OPEN_PATHS
    app.add_middleware(APIKeyMiddleware, keys=keys, open_paths=open_paths)
    return open_paths
