"""The error hierarchy, one class per ``error.type`` the server sends.

::

    GRMError
    ├── TransportError          the request never got an HTTP answer (connection refused, reset, ...)
    │   └── RequestTimeoutError the client's own timeout passed
    └── APIStatusError          the server answered with an error body
        ├── InvalidRequestError 400 / 422 ``invalid_request``  (never retried)
        ├── TooLargeError       413 ``too_large``               (never retried)
        ├── UnauthorizedError   401 ``unauthorized``            (never retried)
        ├── OverloadedError     429 ``overloaded``              (retried, honouring Retry-After)
        ├── NotReadyError       503 ``not_ready``               (retried, honouring Retry-After)
        ├── EngineDeadError     503 ``engine_dead``             (retried: an orchestrator restarts it)
        ├── DeadlineExceededError 504 ``timeout``               (retried)
        └── InternalServerError 500 ``internal_error`` and anything unrecognised
"""

from __future__ import annotations


class GRMError(Exception):
    """Base class of every error this client raises."""

    retryable: bool = False


class TransportError(GRMError):
    """No HTTP response: the connection failed or broke."""

    retryable = True


class RequestTimeoutError(TransportError):
    """The client-side timeout passed before the server answered."""


class APIStatusError(GRMError):
    """The server answered with an error.

    Attributes:
        status_code: the HTTP status.
        type: the server's machine-readable ``error.type``.
        message: the server's explanation.
        request_id: the ``X-Request-ID`` of the failed call, for the server's logs.
        retry_after: seconds the server asked to wait, if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        type: str,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status_code} {type}: {message}")
        self.message = message
        self.status_code = status_code
        self.type = type
        self.request_id = request_id
        self.retry_after = retry_after


class InvalidRequestError(APIStatusError):
    """The request was rejected as malformed or over a server limit; fix it, do not retry."""


class TooLargeError(APIStatusError):
    """The body exceeded the server's size limit; send smaller batches."""


class UnauthorizedError(APIStatusError):
    """Missing or wrong API key."""


class OverloadedError(APIStatusError):
    """No admission slot in time; retried after ``retry_after``."""

    retryable = True


class NotReadyError(APIStatusError):
    """The server is starting or draining; retried after ``retry_after``."""

    retryable = True


class EngineDeadError(APIStatusError):
    """The server's engine failed; it exits and is restarted by its orchestrator."""

    retryable = True


class DeadlineExceededError(APIStatusError):
    """The server's request deadline passed and it aborted the work."""

    retryable = True


class InternalServerError(APIStatusError):
    """An unexpected server failure (logged there with the request id)."""


_BY_TYPE: dict[str, type[APIStatusError]] = {
    "invalid_request": InvalidRequestError,
    "too_large": TooLargeError,
    "unauthorized": UnauthorizedError,
    "overloaded": OverloadedError,
    "not_ready": NotReadyError,
    "engine_dead": EngineDeadError,
    "timeout": DeadlineExceededError,
    "internal_error": InternalServerError,
}
_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: InvalidRequestError,
    401: UnauthorizedError,
    413: TooLargeError,
    422: InvalidRequestError,
    429: OverloadedError,
    503: NotReadyError,
    504: DeadlineExceededError,
}


def error_class(status_code: int, error_type: str | None) -> type[APIStatusError]:
    """The class for a server error: by ``error.type`` first, then by status (proxies send bare statuses)."""
    if error_type in _BY_TYPE:
        return _BY_TYPE[error_type]
    return _BY_STATUS.get(status_code, InternalServerError)
