"""Response models of ``GET /v1/info``: the judge, the meta RM, defaults and limits the server runs with."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class MetaRMOut(BaseModel):
    name: str
    backend: str
    details: dict[str, str]


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


class AdapterOut(BaseModel):
    """The LoRA adapter merged onto the model (``--adapter``)."""

    name: str = Field(description="The adapter folder's name.")
    sha256: str = Field(description="Content hash of the adapter's config and weights.")
    peft_type: str
    rank: int | None


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
    votes: Literal["hard", "soft"] = Field(description="The default votes of a sample (--votes).")
    meta_rm: MetaRMOut | None
    adapter: AdapterOut | None = None
    defaults: dict[str, float | int]
    limits: dict[str, float | int]
