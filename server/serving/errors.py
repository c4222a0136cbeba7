"""One table from failures to HTTP statuses: :class:`APIError` and :func:`to_api_error`.

The serving layer raises and maps these; :mod:`server.api.errors` writes them as the one error body.
Messages never carry paths or stack traces.
"""

from __future__ import annotations

from server.engines.base import ChatTemplateError, EngineDeadError, EngineNotReadyError, PromptTooLongError
from server.serving.dedup import JobCancelledError, KeyReusedError

RETRY_AFTER_S = "5"


class ClientClosedError(Exception):
    """The client disconnected before its answer was ready: nobody is listening (answered 499)."""


class APIError(Exception):
    """An error with its HTTP status and machine-readable type."""

    def __init__(self, status: int, type_: str, message: str, *, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.retry_after = retry_after


def invalid_request(message: str) -> APIError:
    return APIError(400, "invalid_request", message)


def to_api_error(exc: BaseException) -> APIError:
    """Map a pipeline, serving or engine exception to its API error."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, KeyReusedError):
        return APIError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with another request body; use a new key for a new request",
        )
    if isinstance(exc, JobCancelledError):
        return APIError(503, "not_ready", "the server is shutting down", retry_after=RETRY_AFTER_S)
    if isinstance(exc, PromptTooLongError):
        return invalid_request(str(exc))
    if isinstance(exc, EngineNotReadyError):
        return APIError(503, "not_ready", "the engine is starting or draining", retry_after=RETRY_AFTER_S)
    if isinstance(exc, EngineDeadError):
        return APIError(503, "engine_dead", "the engine failed; the server is restarting")
    if isinstance(exc, ChatTemplateError):  # the judge and the model do not match: the operator's to fix
        return APIError(500, "internal_error", f"the judge cannot run on this model: {exc}")
    if isinstance(exc, TimeoutError):
        return APIError(504, "timeout", "the request deadline passed before scoring finished")
    return APIError(500, "internal_error", "internal error")
