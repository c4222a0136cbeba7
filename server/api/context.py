"""A request's :class:`~server.serving.context.CallContext`, read from its headers once.

* ``X-Request-Timeout``: the call's deadline in seconds, capped by ``--request-timeout-s``;
* ``Idempotency-Key``: retries with the same key share one job (scoped to the caller and route);
* the caller's tenant, set by :class:`~server.api.middleware.APIKeyMiddleware`, and the request id,
  set by :class:`~server.api.middleware.RequestIdMiddleware`.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request

from server.api.middleware import TENANT_STATE
from server.config import Settings
from server.serving.context import CallContext, body_fingerprint, dedup_key
from server.serving.errors import invalid_request, to_api_error
from server.serving.state import AppState
from server.serving.validation import refuse_lone_surrogates

TIMEOUT_HEADER = "x-request-timeout"
IDEMPOTENCY_HEADER = "idempotency-key"
MAX_IDEMPOTENCY_KEY_CHARS = 255


def deadline_of(request: Request, settings: Settings) -> float:
    """The request's deadline in seconds: ``X-Request-Timeout`` when given, capped by the server's maximum.

    Raises:
        APIError: 400 for a header that is not a positive number.
    """
    header = request.headers.get(TIMEOUT_HEADER)
    if header is None:
        return settings.request_timeout_s
    try:
        value = float(header)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise invalid_request(f"{TIMEOUT_HEADER} must be a positive number of seconds, got {header!r}")
    return min(value, settings.request_timeout_s)


async def call_context(request: Request, state: AppState) -> CallContext:
    """The call's context: deadline, dedup key and body fingerprint, tenant, request id, disconnect.

    Raises:
        APIError: 503 while the server is not ready (before any header is judged), then 400 for a
            bad ``X-Request-Timeout`` or an empty or over-long ``Idempotency-Key``.
    """
    if not state.ready.is_set():
        raise to_api_error(state.unavailable_error())
    settings = state.settings
    deadline = deadline_of(request, settings)
    tenant: str = getattr(request.state, TENANT_STATE, "")
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and (not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY_CHARS):
        raise invalid_request(f"Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters, not all blank")
    fingerprint = body_fingerprint(await request.body())  # cached by Starlette: the route already parsed it

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return CallContext(
        deadline_s=deadline,
        request_id=getattr(request.state, "request_id", None) or uuid.uuid4().hex,
        tenant=tenant,
        dedup_key=dedup_key(
            f"{tenant}:{request.url.path}", key, fingerprint, identical_bodies=settings.dedup_identical_requests
        ),
        fingerprint=fingerprint,
        disconnected=disconnected,
    )


async def unicode_body(request: Request) -> None:
    """Dependency of the scoring routes: a body whose text holds a lone surrogate (``"\\ud800"``) is
    refused before its schema is checked, whatever field holds it (pydantic refuses one in some string
    fields and passes it in others; the engine's tokenizer fails on it, failing every call grouped with it).

    Raises:
        APIError: 400 naming the field (:func:`~server.serving.validation.refuse_lone_surrogates`).
    """
    try:
        body = await request.json()  # FastAPI's own parse of the body, cached on the request
    except (ValueError, RecursionError):
        return  # no JSON: the schema check refuses it
    refuse_lone_surrogates(body)
