"""Typed results of grm-serve calls (plain dataclasses, built from the server's JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

RewardMode = Literal["raw", "mean", "unit"]
"""How a response's votes become one float.

* ``raw``: the sum of the kept votes (``score``; n votes on the scale [low, high] span n·low..n·high); for
  an item adaptive k drew, or any item of a pairwise judge (whose responses are judged in as many pairs as
  their pool gives them), the k-normalised sum (``normalized_score``: the mean times the votes one judged
  set gives at full k, k or k_meta);
* ``mean``: the per-vote mean on the judge's vote scale (``mean_score``; deepseek-grm: 1..10, an A/B
  judge: 0..1), comparable across k;
* ``unit``: the mean mapped linearly to [0, 1] by that scale (``(mean - low) / (high - low)``; deepseek-grm:
  ``(mean - 1) / 9``). The scale is the one the server's answer states (``scale``), else 1..10 (servers
  older than judge profiles serve only deepseek-grm).
"""

DEFAULT_SCALE = (1.0, 10.0)  # deepseek-grm's votes: what a server that states no scale serves


@dataclass(frozen=True)
class ResponseScore:
    index: int
    score: float | None
    mean_score: float | None
    votes: int
    valid_samples: int
    status: str  # "ok" | "no_valid_samples" | "unpaired" (a pairwise judge had nothing to compare it with)
    normalized_score: float | None = None  # mean_score x the votes full k gives (None from older servers)
    adaptive: bool = False  # its item was drawn by adaptive k (raw rewards are then k-normalised)
    pairwise: bool = False  # a pairwise judge scored it, over its pairs (raw rewards are then k-normalised)
    scale: tuple[float, float] = DEFAULT_SCALE  # the judge's vote scale [low, high], as the server states it

    def reward(self, mode: RewardMode = "mean") -> float | None:
        """This response's reward in ``mode``; None when no sample could be parsed.

        Raises:
            ValueError: for an unknown mode.
        """
        if self.score is None or self.mean_score is None:
            return None
        if mode == "raw":
            normalized = (self.adaptive or self.pairwise) and self.normalized_score is not None
            return self.normalized_score if normalized else self.score
        if mode == "mean":
            return self.mean_score
        if mode == "unit":
            low, high = self.scale
            return (self.mean_score - low) / (high - low)
        raise ValueError(f"unknown reward mode {mode!r}; use 'raw', 'mean' or 'unit'")


@dataclass(frozen=True)
class RolloutReward:
    """The answer of ``POST /v1/reward``: one rollout judged (grouped with its prompt's other rollouts).

    ``reward`` is on the scale the server sets (``--openrlhf-reward``), ``score`` on [0, 1];
    ``unscored`` rollouts (no sample parsed) carry 0.0 in both.
    """

    reward: float
    score: float
    unscored: bool
    group_size: int
    k_used: int | None = None  # samples its GRM prompt drew (fewer than k when adaptive k stopped early)
    votes: str | None = None  # hard or soft: what the samples voted with (None from servers without soft votes)


def parse_rollout_reward(data: dict[str, Any]) -> RolloutReward:
    return RolloutReward(
        reward=float(data["reward"]),
        score=float(data["score"]),
        unscored=bool(data["unscored"]),
        group_size=int(data["group_size"]),
        k_used=data.get("k_used"),
        votes=data.get("votes"),
    )


@dataclass(frozen=True)
class Sample:
    group: int
    responses: list[int]
    permutation: list[int]
    status: str
    principles: str | None
    critique: str | None
    scores: list[int] | None
    kept: bool
    meta_score: float | None
    finish_reason: str | None
    generation_tokens: int
    text: str | None
    soft_scores: list[float] | None = None  # soft votes (votes: soft), aligned with ``scores``
    soft_source: str | None = None  # sampled, or guided (a guided continuation wrote the verdict)


@dataclass(frozen=True)
class ScoreResult:
    """One judged item."""

    responses: list[ResponseScore]
    k: int
    k_meta: int | None
    valid_samples: int
    total_samples: int
    samples: list[Sample] | None
    usage: dict[str, int]
    model: str
    template: str
    k_used: int | None = None  # samples drawn per group (fewer than k when adaptive k stopped early)
    stop_reason: str | None = None  # off, rank, stderr, confident or k (None from servers without adaptive k)
    scale: tuple[float, float] = DEFAULT_SCALE  # the judge's vote scale (1..10 from servers that state none)
    judge_mode: str | None = None  # group, single or pairwise (None from servers that state none)
    votes: str | None = None  # hard or soft: what the samples voted with (None from servers without soft votes)

    def rewards(self, mode: RewardMode = "mean", *, missing: float | None = None) -> list[float | None]:
        """One reward per response, in request order; ``missing`` where no sample parsed."""
        out = []
        for r in self.responses:
            value = r.reward(mode)
            out.append(missing if value is None else value)
        return out


@dataclass(frozen=True)
class Ranking:
    """Best-of-N: response indices from best to worst (ties keep request order) and the best one."""

    order: list[int]
    best: int
    result: ScoreResult


@dataclass(frozen=True)
class RerankResult:
    """One document of a rerank answer: its request index and relevance in [0, 1] (the server maps the
    mean vote by its judge's scale)."""

    index: int
    relevance_score: float
    mean_score: float | None
    votes: int
    document: str | None = None


def parse_rerank(data: dict[str, Any]) -> list[RerankResult]:
    return [
        RerankResult(
            index=r["index"],
            relevance_score=r["relevance_score"],
            mean_score=r.get("mean_score"),
            votes=r.get("votes", 0),
            document=(r.get("document") or {}).get("text"),
        )
        for r in data["results"]
    ]


def parse_item(
    data: dict[str, Any],
    model: str,
    template: str,
    scale: list[float] | tuple[float, float] | None = None,
    judge_mode: str | None = None,
) -> ScoreResult:
    """One item of a ``/v1/score`` answer; ``template``, ``scale`` and ``judge_mode`` are the answer's (an
    item's own ``template`` wins; a missing scale is deepseek-grm's 1..10, what servers that state none
    serve).

    Raises:
        ValueError: for a scale that is not two increasing numbers.
    """
    if scale is not None and len(scale) != 2:
        raise ValueError(f"the server's scale {scale!r} is not [low, high]")
    vote_scale = DEFAULT_SCALE if scale is None else (float(scale[0]), float(scale[1]))
    if not vote_scale[0] < vote_scale[1]:
        raise ValueError(f"the server's scale {scale!r} is not [low, high] with low < high")
    samples = None
    if data.get("samples") is not None:
        samples = [
            Sample(
                group=s["group"],
                responses=s["responses"],
                permutation=s["permutation"],
                status=s["status"],
                principles=s.get("principles"),
                critique=s.get("critique"),
                scores=s.get("scores"),
                kept=s.get("kept", s["status"] == "parsed"),
                meta_score=s.get("meta_score"),
                finish_reason=s.get("finish_reason"),
                generation_tokens=s.get("generation_tokens", 0),
                text=s.get("text"),
                soft_scores=s.get("soft_scores"),
                soft_source=s.get("soft_source"),
            )
            for s in data["samples"]
        ]
    fields = [f for f in ResponseScore.__dataclass_fields__ if f not in ("adaptive", "pairwise", "scale")]
    flags = {"adaptive": data.get("stop_reason", "off") != "off", "pairwise": judge_mode == "pairwise"}
    return ScoreResult(
        responses=[
            ResponseScore(**{f: r.get(f) for f in fields}, **flags, scale=vote_scale) for r in data["responses"]
        ],
        k=data["k"],
        k_meta=data.get("k_meta"),
        valid_samples=data["valid_samples"],
        total_samples=data["total_samples"],
        samples=samples,
        usage=data.get("usage", {}),
        model=model,
        template=data.get("template", template),
        k_used=data.get("k_used"),
        stop_reason=data.get("stop_reason"),
        scale=vote_scale,
        judge_mode=judge_mode,
        votes=data.get("votes"),
    )


def rank_of(result: ScoreResult) -> Ranking:
    """Order responses by mean score (unscored ones last), stable on ties."""

    def key(i: int) -> tuple[int, float]:
        mean = result.responses[i].mean_score
        return (0, -mean) if mean is not None else (1, 0.0)

    order = sorted(range(len(result.responses)), key=key)
    return Ranking(order=order, best=order[0], result=result)
