"""One call's part of a grouped batch's result (:mod:`server.serving.grouping`): its responses, the
samples as they bear on them, and its share of the batch's tokens in integers that add up."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Protocol

from server.engines.base import PromptTooLongError
from server.pipeline.domain import ItemResult, Sample
from server.pipeline.errors import SetTooLongError
from server.serving.admission import Share


class Waiting(Protocol):
    """A call waiting for its rows' result (a grouped batch's seat)."""

    future: asyncio.Future[ItemResult]


def exact_shares(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` as integers that sum to ``total`` (largest remainder;
    ties go to the earlier weight)."""
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def share_of(combined: ItemResult, offset: int, count: int, tokens: tuple[int, int]) -> ItemResult:
    """One call's part of a batch's result: its responses, the samples as they bear on them, its token share.

    A sample's permutation and scores are restricted to this call's responses (in the order shown);
    the group sizes stay those of the shared GRM prompt. ``tokens`` is the call's (prompt, generation)
    share of the batch's tokens (:func:`exact_shares`).
    """
    mine = range(offset, offset + count)
    samples = [_project(s, combined.groups[s.group], mine) for s in combined.samples]
    groups = [[c - offset for c in g if c in mine] for g in combined.groups]
    return ItemResult(
        responses=combined.responses[offset : offset + count],
        samples=samples,
        k=combined.k,
        prompt_tokens=tokens[0],
        generation_tokens=tokens[1],
        groups=groups,
        k_meta=combined.k_meta,
        generate_seconds=combined.generate_seconds,
        meta_rm_seconds=combined.meta_rm_seconds,
        group_sizes=combined.group_sizes[offset : offset + count],
        k_used=combined.k_used,
        adaptive=combined.adaptive,
        stop_reason=combined.stop_reason,
        rounds=combined.rounds,
        votes=combined.votes,
    )


def _project(sample: Sample, members: list[int], mine: range) -> Sample:
    local = [j for j, c in enumerate(members) if c in mine]  # positions (within the group) of this call's
    position = {j: i for i, j in enumerate(local)}
    return dataclasses.replace(
        sample,
        permutation=tuple(position[p] for p in sample.permutation if p in position),
        scores=tuple(sample.scores[j] for j in local) if sample.scores is not None else None,
        soft_scores=tuple(sample.soft_scores[j] for j in local) if sample.soft_scores is not None else None,
    )


def is_too_long(exc: BaseException) -> bool:
    """Whether a judge's failure (perhaps inside task groups) is a prompt too long for the context."""
    if isinstance(exc, BaseExceptionGroup):
        return any(is_too_long(e) for e in exc.exceptions)
    return isinstance(exc, PromptTooLongError)


def blamed_rows(exc: BaseException, responses: Sequence[str]) -> dict[int, PromptTooLongError]:
    """The rows of a pairwise pool that a too-long failure blames, each with the error of its set: of
    every judged set whose prompt did not fit (:class:`~server.pipeline.errors.SetTooLongError`), the
    longest response (in characters; of equal ones the last, the latest call's). A row too long for
    every pair is blamed by whichever of its pairs failed; of two rows that only together overflow,
    the longer one. Empty when the failure names no set."""
    out: dict[int, PromptTooLongError] = {}
    for e in _leaves(exc):
        if isinstance(e, SetTooLongError) and e.responses:
            out.setdefault(max(e.responses, key=lambda i: (len(responses[i]), i)), e)
    return out


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def settle(members: Sequence[Waiting], exc: BaseException) -> None:
    """Give every member still waiting the batch's failure (a cancellation cancels their futures)."""
    for m in members:
        if m.future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            m.future.cancel()
        else:
            m.future.set_exception(exc)


def judged_alone(share: Share, samples: float, _: object) -> None:
    """A call judged alone after a split ended: its samples leave the batch's share of the books."""
    share.resize(share.samples - samples)
