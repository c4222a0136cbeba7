"""Request and response models of the HTTP API (pydantic), apart from the domain dataclasses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic.json_schema import SkipJsonSchema

from server.pipeline.domain import Message
from server.serving.validation import ItemOptions


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class GRMOptions(BaseModel):
    """grm-serve's scoring options, shared by ``/v1/score`` items and the rerank routes (server
    defaults when unset); :meth:`item` is their one conversion to the serving layer's item."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # NaN and Infinity are JSON to Python

    k: int | None = Field(None, ge=1, description="Samples per response group (server default if unset).")
    temperature: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=64, description="Generation budget of each sample.")
    k_meta: int | None = Field(
        None, ge=1, description="Samples per group kept to vote by the meta RM (server default k/2); needs a meta RM."
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Makes orders and sampling repeatable.")
    principles: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | str | None = Field(
        None, description="A user rubric (criteria list or one text): the GRM judges by it instead of its own."
    )
    adaptive: Literal["off", "rank", "stderr", "confident"] | None = Field(
        None,
        description="Adaptive k: draw samples in rounds and stop once the vote is decided. rank: the order "
        "of the responses can no longer change; stderr: every mean vote's standard error is at most "
        "adaptive_epsilon; confident: full k would order every pair of responses as now with estimated "
        "probability at least 1 - adaptive_delta; off: always k (server default if unset, --adaptive).",
    )
    adaptive_epsilon: float | None = Field(
        None,
        gt=0,
        description="stderr rule: the largest standard error of a mean vote to stop at, in the judge's vote units "
        "(/v1/info's vote scale; deepseek-grm: 1..10). Unset: the server's (/v1/info defaults.adaptive_epsilon; "
        "by default 0.5 per 9 units of the vote scale).",
    )
    adaptive_delta: float | None = Field(
        None,
        ge=0,
        le=1,
        description="confident rule: the largest estimated probability that full k orders a pair of responses "
        "otherwise than now (0: only a proven order stops).",
    )
    k_min: int | None = Field(None, ge=1, description="Adaptive k: fewest samples per group before a stop.")

    def item(
        self, messages: tuple[Message, ...], responses: tuple[str, ...], reference: str | None = None
    ) -> ItemOptions:
        """These options on a conversation and its responses."""
        return ItemOptions(
            messages=messages,
            responses=responses,
            k=self.k,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            k_meta=self.k_meta,
            seed=self.seed,
            principles=self.principles,
            reference=reference,
            adaptive=self.adaptive,
            adaptive_epsilon=self.adaptive_epsilon,
            adaptive_delta=self.adaptive_delta,
            k_min=self.k_min,
        )


class _Conversation(BaseModel):
    """The conversation and responses of a ``/v1/score`` item (fields first in its schema)."""

    # SkipJsonSchema: null is never a valid value to send, so the schema does not offer it.
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | SkipJsonSchema[None] = None
    query: str | SkipJsonSchema[None] = None
    responses: list[str] = Field(min_length=1, description="Candidate responses, judged in this order.")


class ScoreItem(GRMOptions, _Conversation):
    """One query and the responses to judge. Give ``messages`` (a conversation ending with the user's
    turn) or ``query`` (a single user turn), not both."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # no lax coercions: "return_samples": 0 or "k": "4" are schema errors
        json_schema_extra={
            "examples": [{"query": "Are cows blue? Answer yes or no.", "responses": ["no", "Yes."], "k": 4, "seed": 0}],
            # Exactly one of the two (the validator below enforces it; the schema says it to generators).
            "oneOf": [
                {"required": ["query"], "not": {"required": ["messages"]}},
                {"required": ["messages"], "not": {"required": ["query"]}},
            ],
        },
    )

    reference: str | None = Field(
        None,
        min_length=1,
        description="A reference answer (ground truth): the GRM judges correctness against it.",
    )
    return_samples: bool = Field(False, description="Include every sample's principles, critique and scores.")

    def to_item(self) -> ItemOptions:
        """The serving layer's item: the turns (its messages, or its query as one user turn), the
        responses, the reference and the GRM options."""
        if self.messages is not None:
            messages = tuple(Message(m.role, m.content) for m in self.messages)
        else:
            messages = (Message("user", self.query or ""),)
        return self.item(messages, tuple(self.responses), self.reference)

    @model_validator(mode="before")
    @classmethod
    def _no_explicit_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("messages", "query"):
                if key in data and data[key] is None:
                    raise ValueError(f"'{key}' must not be null; leave it out instead")
        return data

    @model_validator(mode="after")
    def _one_conversation(self) -> ScoreItem:
        if (self.messages is None) == (self.query is None):
            raise ValueError("give exactly one of 'messages' or 'query'")
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError("the last message must be the user's turn (the query)")
        return self


class ScoreBatchRequest(BaseModel):
    """Several items scored in one call, e.g. one RL rollout batch."""

    model_config = ConfigDict(extra="forbid")

    items: list[ScoreItem] = Field(min_length=1)


def _body_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "batch" if "items" in value else "item"
    return "batch" if isinstance(value, ScoreBatchRequest) else "item"


ScoreBody = Annotated[
    Annotated[ScoreItem, Tag("item")] | Annotated[ScoreBatchRequest, Tag("batch")],
    Discriminator(_body_kind),
]
"""A single item, or ``{"items": [...]}`` for a batch."""


class ResponseScoreOut(BaseModel):
    index: int = Field(description="Position of the response in the request.")
    score: float | None = Field(
        description="Sum of the kept votes (k votes on the scale [low, high] span k*low..k*high); null if none "
        "parsed, or unpaired."
    )
    mean_score: float | None = Field(
        description="score / votes, on the judge's vote scale (the answer's 'scale'; deepseek-grm: 1..10, an A/B "
        "judge: 0..1, its win rate)."
    )
    normalized_score: float | None = Field(
        description="mean_score times the votes one judged set gives at full k (k, or k_meta with a meta RM): a "
        "sum comparable across items that stopped at different k (adaptive k), lost samples that did not parse, "
        "or (pairwise judges) were judged in more or fewer pairs. raw rewards of adaptive items and of "
        "pairwise judges."
    )
    votes: int = Field(description="Samples whose scores were summed (the kept ones when a meta RM filters).")
    valid_samples: int = Field(description="Samples of this response's group that parsed.")
    status: Literal["ok", "no_valid_samples", "unpaired"] = Field(
        description="ok; no_valid_samples: no sample parsed (null score); unpaired: a pairwise judge had no "
        "other response to compare it with (a lone response whose grouping window ended alone; null score)."
    )
    group_size: int = Field(
        description="Responses judged together in this response's GRM prompt (pairwise judges: in its pool, "
        "compared pair by pair; single-response judges: 1), other calls' included when rows of the same "
        "prompt were grouped across calls."
    )


class SampleOut(BaseModel):
    group: int
    responses: list[int] = Field(description="Request indices of the responses this sample judged.")
    permutation: list[int] = Field(description="Request indices in the order the sample was shown them.")
    status: Literal["parsed", "unparseable"]
    principles: str | None
    critique: str | None
    scores: list[int | float] | None = Field(
        description="Votes aligned with 'responses' (request order): the judge's scores, or a pairwise verdict's votes."
    )
    finish_reason: str | None
    generation_tokens: int
    meta_score: float | None = Field(None, description="The meta RM's rating of this sample (null without one).")
    kept: bool = Field(description="Whether this sample's scores were summed.")
    continued: bool = Field(
        False,
        description="Whether the budget cut this sample before its scores and a short guided continuation "
        "completed it (its critique may end abruptly).",
    )
    text: str | None = Field(None, description="Raw generation, given for unparseable samples.")


class Usage(BaseModel):
    prompt_tokens: int
    generation_tokens: int


class Timings(BaseModel):
    generate_seconds: float = Field(description="Wall time of the item's GRM sampling.")
    meta_rm_seconds: float = Field(description="Wall time of the meta RM's ratings (0 without one).")


class ItemScoreOut(BaseModel):
    responses: list[ResponseScoreOut]
    k: int
    k_used: int = Field(description="Samples drawn per group (at most k; fewer when adaptive k stopped early).")
    stop_reason: Literal["off", "rank", "stderr", "confident", "k"] = Field(
        description="off: not adaptive (k drawn); rank, stderr or confident: that rule stopped it; k: adaptive, "
        "but the rule decided only at k."
    )
    rounds: int = Field(description="Rounds of engine requests (1 unless adaptive).")
    k_meta: int | None = Field(description="Samples kept per group by the meta RM; null when all parsed samples vote.")
    valid_samples: int
    total_samples: int
    usage: Usage
    timings: Timings
    samples: list[SampleOut] | None = None
    template: str = Field(
        description="The versioned judge prompt this item was judged with (its rubric and reference slots filled "
        "or not)."
    )


_SCALE = (
    "The judge's vote scale [low, high] (/v1/info judge.scale): the range of mean_score; unit rewards map it to [0, 1]."
)
_JUDGE_MODE = (
    "The judge's mode (/v1/info judge.mode): group, single or pairwise. A pairwise judge's responses are judged in "
    "as many pairs as their pool gives them, so their raw rewards are normalized_score, not score."
)


class ScoreResponse(ItemScoreOut):
    model: str
    scale: tuple[float, float] = Field(description=_SCALE)
    judge_mode: Literal["group", "single", "pairwise"] = Field(description=_JUDGE_MODE)


class ScoreBatchResponse(BaseModel):
    model: str
    template: str = Field(description="The judge's prompt without rubric or reference (each item names its own).")
    scale: tuple[float, float] = Field(description=_SCALE)
    judge_mode: Literal["group", "single", "pairwise"] = Field(description=_JUDGE_MODE)
    items: list[ItemScoreOut]


class ErrorBody(BaseModel):
    type: str
    message: str
    code: int


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` for OpenAPI: each status answers with an :class:`ErrorResponse`."""
    return {status: {"model": ErrorResponse} for status in statuses}


# What every scoring route (/v1/score, /get_reward, the rerank routes) documents: 401 with API keys
# on, 422 for a schema violation or an Idempotency-Key reused with another body, 429 overloaded.
SCORING_ERRORS = error_responses(400, 401, 413, 422, 429, 500, 503, 504)
# Routes behind the API key that do no scoring (/v1/info, /metrics when not public).
AUTH_ERRORS = error_responses(401)


class MetaRMOut(BaseModel):
    name: str
    backend: str
    details: dict[str, str]


class AdapterOut(BaseModel):
    """The LoRA adapter merged onto the model (``--adapter``)."""

    name: str = Field(description="The adapter folder's name.")
    sha256: str = Field(description="Content hash of the adapter's config and weights.")
    peft_type: str
    rank: int | None


class JudgeOut(BaseModel):
    """The judge profile the server runs (``--judge``, docs/judges.md)."""

    name: str
    source: Literal["builtin", "file"] = Field(description="A built-in profile (--judge) or a file (--judge-file).")
    mode: Literal["group", "single", "pairwise"]
    scale: tuple[float, float] = Field(
        description="The range of one vote on one response (low, high): the vote scale of the judge and its "
        "aggregation, what mean_score spans and unit rewards map to [0, 1]."
    )
    output_scale: tuple[float, float] = Field(description="The range of the judge's own verdict scores.")
    takes_reference: bool
    takes_principles: bool
    pool_size: int = Field(
        description="Responses judged together in one prompt (group), or compared pair by pair (pairwise); 1 for "
        "single-response judges."
    )
    groups_across_calls: bool = Field(
        description="Whether one-row calls of the same prompt wait up to --group-window-s to be judged together "
        "(pairwise judges: to form pairs); never for single-response judges."
    )
    pairing: Literal["circular", "all_pairs"] | None = Field(None, description="Pairwise judges: which pairs.")
    aggregation: Literal["mean", "win_rate", "tiebreaker"] | None = Field(
        None, description="Pairwise judges: how a verdict becomes votes."
    )


class InfoResponse(BaseModel):
    version: str
    model: str
    engine: str
    engine_version: str
    max_model_len: int | None
    template: str
    judge: JudgeOut
    format_guidance: bool
    adaptive: Literal["off", "rank", "stderr", "confident"] = Field(
        description="The default rule of adaptive k (--adaptive)."
    )
    meta_rm: MetaRMOut | None
    adapter: AdapterOut | None = None
    defaults: dict[str, float | int]
    limits: dict[str, float | int]
