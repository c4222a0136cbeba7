"""Voting over GRM samples (pure). Paper Eq. 14: a response's score is the sum of its votes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from server.pipeline.domain import ResponseScore, ResponseStatus
from server.pipeline.judges.base import Scale

RewardMode = Literal["unit", "mean", "raw"]


def to_reward(score: ResponseScore, mode: RewardMode, *, scale: Scale, normalized: bool = False) -> float | None:
    """One float per response for RL: ``raw`` summed votes (or k-normalised, below), ``mean`` per-vote mean (on the vote
    ``scale``: deepseek-grm's 1..10, an A/B judge's 0..1, see
    :func:`~server.pipeline.judges.pairing.vote_scale`), or ``unit`` that mean mapped linearly to
    [0, 1] by the scale (``(mean - low) / (high - low)``); None when no sample voted.

    With ``normalized``, ``raw`` is the k-normalised sum: the mean times the votes one judged set gives
    at full k (k, or k_meta with a meta RM), so rewards stay comparable across items. The trainer
    routes ask for it for adaptive items, which stop at different k, and for a pairwise judge's,
    whose plain sum would count the pairs a response's pool gave it (two circular pairs in a pool of
    three, one in a pool of two) as much as how it did in them.
    """
    if score.score is None or score.mean_score is None:
        return None
    if mode == "raw":
        return score.normalized_score if normalized and score.normalized_score is not None else score.score
    if mode == "mean":
        return score.mean_score
    return scale.unit(score.mean_score)


def vote(
    score_vectors: Sequence[Sequence[int]], n_responses: int, valid_samples: int, *, full_votes: int | None = None
) -> list[ResponseScore]:
    """Sum the votes of the kept samples for each response.

    Args:
        score_vectors: one score tuple per voting sample, each in the caller's response order.
        n_responses: how many responses the samples judged.
        valid_samples: how many samples parsed (may exceed the voters once a meta RM filters).
        full_votes: how many samples vote at full k (k, or k_meta with a meta RM): the scale of the
            k-normalised sum, ``mean * full_votes`` (None: the votes given).

    Returns:
        One :class:`ResponseScore` per response. With no voters every response gets a null score
        and status ``no_valid_samples``: the item still answers, it is not an error.

    Raises:
        ValueError: if a score vector has the wrong length.
    """
    for vec in score_vectors:
        if len(vec) != n_responses:
            raise ValueError(f"score vector of length {len(vec)} for {n_responses} responses")
    votes = len(score_vectors)
    if votes == 0:
        empty = ResponseScore(None, None, 0, valid_samples, ResponseStatus.NO_VALID_SAMPLES)
        return [empty] * n_responses
    results = []
    for i in range(n_responses):
        total = float(sum(vec[i] for vec in score_vectors))
        mean = total / votes
        normalized = mean * (full_votes if full_votes is not None else votes)
        results.append(ResponseScore(total, mean, votes, valid_samples, ResponseStatus.OK, normalized))
    return results


def vote_response(
    values: Sequence[float], valid_samples: int, *, full_votes: int | None = None, judged: bool = True
) -> ResponseScore:
    """One response's vote from every kept vote it received (in any set that judged it).

    ``valid_samples`` counts the parsed samples of those sets; ``full_votes`` is how many votes it gets
    at full k (the scale of the k-normalised sum, ``mean * full_votes``; None: the votes given). A
    response no set judged (``judged`` false: a pairwise judge's pool of one) is ``unpaired``.
    """
    if not judged:
        return ResponseScore(None, None, 0, 0, ResponseStatus.UNPAIRED)
    if not values:
        return ResponseScore(None, None, 0, valid_samples, ResponseStatus.NO_VALID_SAMPLES)
    total = float(sum(values))
    mean = total / len(values)
    normalized = mean * (full_votes if full_votes is not None else len(values))
    return ResponseScore(total, mean, len(values), valid_samples, ResponseStatus.OK, normalized)
