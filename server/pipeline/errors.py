"""The scoring pipeline's own failures (the engine's are in :mod:`server.engines.base`)."""

from __future__ import annotations

from server.engines.base import PromptTooLongError


class SetTooLongError(PromptTooLongError):
    """A judged set's prompt does not fit the context, and which responses it showed (``responses``:
    caller indices), so that a grouped pool can tell which rows to leave out
    (:mod:`server.serving.grouping`). Otherwise the engine's :class:`PromptTooLongError`, message and all."""

    def __init__(self, message: str, responses: tuple[int, ...]) -> None:
        super().__init__(message)
        self.responses = responses
