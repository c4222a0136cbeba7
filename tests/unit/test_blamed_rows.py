"""Which row of a pairwise pool a refused pair blames (:func:`server.serving.grouped_results.blamed_rows`)."""

from __future__ import annotations

from server.engines.base import PromptTooLongError
from server.pipeline.errors import SetTooLongError
from server.serving.grouped_results import blamed_rows


def test_of_a_refused_pair_the_longer_row_is_blamed_with_that_pair_s_error() -> None:
    refused = SetTooLongError("prompt of 900 tokens exceeds the context of 800", (0, 2))
    failure = ExceptionGroup("pool", [ExceptionGroup("item", [refused])])  # as task groups nest it
    assert blamed_rows(failure, ["medium" * 50, "short", "medium" * 60]) == {2: refused}


def test_a_refusal_that_names_no_pair_blames_no_row() -> None:
    assert blamed_rows(PromptTooLongError("too long"), ["a", "b"]) == {}
