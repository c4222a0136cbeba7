"""Request and response models of ``/v1/rerank``, ``/v2/rerank`` and ``/rerank``: Cohere's rerank API
(v1 and v2, SDK 7.x), which Jina's and vLLM's follow, with grm-serve's scoring options riding along."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from server.api.protocol import GRMOptions
from server.serving.rerank_documents import MAX_RANK_FIELDS


def _document_kind(value: Any) -> str | None:
    return "text" if isinstance(value, str) else "object" if isinstance(value, dict) else None


RerankDocument = Annotated[
    Annotated[str, Tag("text")] | Annotated[dict[str, str], Tag("object")],
    Discriminator(
        _document_kind,
        custom_error_type="document_type",
        custom_error_message="Input should be a string or an object of string fields",
    ),
]
"""A string, or (Cohere v1) an object of string fields, ranked on ``rank_fields`` (default ``text``)."""


class RelevantSpans(BaseModel):
    """Cohere v2's ``relevant_spans`` (SDK 7.x): asks for the spans of each document relevant to the query.

    Accepted so Cohere's SDKs work; the GRM judges each document whole and finds no spans, so results
    never carry ``relevant_spans`` and ``meta.warnings`` says so when the mode is ``enabled``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mode: Literal["enabled", "disabled"]
    threshold: float | None = Field(None, ge=0, le=1)
    max_spans: int | None = Field(None, ge=1)


def _rerank_schema(schema: dict[str, Any]) -> None:
    """The rerank request's schema: its example, and its own wording of the shared GRM options."""
    schema["examples"] = [{"query": "Capital of France?", "documents": ["Paris.", "Lyon.", "Berlin."], "top_n": 2}]
    properties = schema["properties"]
    properties["k"]["description"] = "GRM samples per document group."
    properties["k_meta"]["description"] = "Samples kept to vote per group by the meta RM."
    del properties["seed"]["description"]


class _CohereRerank(BaseModel):
    """Cohere v1/v2 rerank fields (first in the rerank request's schema)."""

    model: str | None = Field(None, description="Accepted for compatibility; the server's GRM answers.")
    query: str = Field(min_length=1)
    documents: list[RerankDocument] = Field(
        min_length=1,
        description="Strings, or objects of string fields (Cohere v1, Jina's {'text': ...}) judged on rank_fields.",
    )
    top_n: int | None = Field(None, ge=1, description="Return only the best top_n (default: all).")
    return_documents: bool = Field(
        False, description="Echo each document in its result: a string as {'text': ...}, an object whole."
    )
    rank_fields: (
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=MAX_RANK_FIELDS)] | None
    ) = Field(
        None,
        description="The fields of object documents to judge, in order (default: 'text'). One field: its value "
        f"as is; several: one 'name: value' line each. A document is shown the named fields it has. At most "
        f"{MAX_RANK_FIELDS} fields.",
    )
    relevant_spans: RelevantSpans | None = Field(
        None, description="Cohere v2's span request: accepted, but no spans are returned (meta.warnings says so)."
    )
    # Cohere / Jina fields a GRM has no use for: accepted so their SDKs work, ignored.
    max_chunks_per_doc: int | None = None
    max_tokens_per_doc: int | None = None
    priority: int | None = None


class RerankRequest(GRMOptions, _CohereRerank):
    """Cohere v1/v2 rerank request; the GRM's own options ride along as extra fields."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # no lax coercions: "k": true or "temperature": "0.5" are schema errors
        json_schema_extra=_rerank_schema,
    )

    anchor: bool = Field(
        True, description="With more documents than one GRM group, judge the first in every group and calibrate."
    )


class RerankResultOut(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float = Field(
        description="mean_score mapped to [0, 1] by the judge's vote scale (meta.grm.scale: (mean_score - low) / "
        "(high - low); deepseek-grm: (mean_score - 1) / 9), clamped; 0 when no sample parsed. Results are ordered "
        "by mean_score, not by this value, so two results with relevance 1 can still differ."
    )
    document: dict[str, str] | None = Field(
        None, description="With return_documents: the document, a string as {'text': ...}, an object whole."
    )
    mean_score: float | None = Field(
        None,
        description="The calibrated per-vote mean that orders the results: the votes' mean (on the judge's vote "
        "scale, meta.grm.scale; deepseek-grm: 1..10) shifted by the anchor calibration, so it can fall outside "
        "the scale. Absent when no sample parsed (such results come last).",
    )
    votes: int = Field(description="Votes summed over the document's groups.")


class RerankUsage(BaseModel):
    prompt_tokens: int
    generation_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResultOut] = Field(description="Best first.")
    usage: RerankUsage
    meta: dict[str, Any] = Field(
        description="Cohere's api_version and billed_units (one search unit per GRM group), warnings (e.g. that "
        "relevant_spans gets no spans), grm.groups: each GRM group's documents, the samples it drew "
        "(k_used) and why it stopped (stop_reason), grm.scale: the judge's vote scale [low, high], and grm.votes: hard "
        "or soft, what the samples voted with."
    )
