"""Every error in one body shape: ``{"error": {"type": "...", "message": "...", "code": N}}``.

Unexpected failures are logged with the request id and answered with a generic 500; the statuses
come from the serving layer's table (:mod:`server.serving.errors`).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.serving.errors import APIError, ClientClosedError, to_api_error

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's "client closed request": logged and counted, never delivered


def error_response(status: int, type_: str, message: str, retry_after: str | None = None) -> JSONResponse:
    headers = {"Retry-After": retry_after} if retry_after else None
    body = {"error": {"type": type_, "message": message, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "item", "batch"))
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the same body shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.type, exc.message, exc.retry_after)

    @app.exception_handler(ClientClosedError)
    async def _client_closed(request: Request, exc: ClientClosedError) -> Response:
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "invalid_request")
        response = error_response(exc.status_code, type_, str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. the Allow header of a 405
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        api = to_api_error(exc)
        if api.status == 500:
            rid = getattr(request.state, "request_id", "-")
            log.error("unhandled error in request %s", rid, exc_info=exc)
        return error_response(api.status, api.type, api.message, api.retry_after)
