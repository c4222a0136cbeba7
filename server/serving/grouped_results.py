"""One call's part of a grouped batch's result (:mod:`server.serving.grouping`): its responses, the
samples as they bear on them, and its share of the batch's tokens in integers that add up."""

from __future__ import annotations

import dataclasses

from server.engines.base import PromptTooLongError
from server.pipeline.domain import ItemResult, Sample


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
    )


def _project(sample: Sample, members: list[int], mine: range) -> Sample:
    local = [j for j, c in enumerate(members) if c in mine]  # positions (within the group) of this call's
    position = {j: i for i, j in enumerate(local)}
    return dataclasses.replace(
        sample,
        permutation=tuple(position[p] for p in sample.permutation if p in position),
        scores=tuple(sample.scores[j] for j in local) if sample.scores is not None else None,
    )


def is_too_long(exc: BaseException) -> bool:
    """Whether a judge's failure (perhaps inside task groups) is a prompt too long for the context."""
    if isinstance(exc, BaseExceptionGroup):
        return any(is_too_long(e) for e in exc.exceptions)
    return isinstance(exc, PromptTooLongError)
