"""``POST /v1/rerank`` and ``/v2/rerank``: Cohere's rerank API (Jina's and vLLM's follow it) on the GRM.

The documents are the responses to judge and the query is the user's turn. More documents than fit
one GRM prompt are split into groups that share an anchor document (:mod:`server.serving.reranking`), each
group is judged with k samples like a ``/v1/score`` item, and the documents come back best first with
a ``relevance_score`` in [0, 1]. Object documents (Cohere v1) are judged on their ``rank_fields``
(:mod:`server.serving.rerank_documents`); Cohere v2's ``relevant_spans`` is accepted, but the GRM finds
no spans, and ``meta.warnings`` says so.
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request

from server.api.context import call_context
from server.api.protocol import SCORING_ERRORS
from server.api.rerank_protocol import RerankRequest, RerankResponse, RerankResultOut, RerankUsage
from server.pipeline.domain import Message
from server.pipeline.scoring import Linked
from server.serving.rerank_documents import judged_texts
from server.serving.reranking import anchored, plan_groups, rank
from server.serving.service import ScoringService

router = APIRouter(tags=["rerank"])
_ERRORS = SCORING_ERRORS
# Cohere's SDKs surface meta.warnings; the GRM judges whole documents, so it has no spans to give.
NO_SPANS = (
    "relevant_spans: grm-serve does not compute spans (the GRM judges each document whole), so no result "
    "carries relevant_spans; relevance_score is the whole document's"
)


def _returned(document: str | dict[str, str]) -> dict[str, str]:
    """A document as Cohere returns it: a string as {'text': ...}, an object with all its fields."""
    return {"text": document} if isinstance(document, str) else document


async def rerank(body: RerankRequest, request: Request) -> RerankResponse:
    """Rank the documents by how well each answers the query, best first."""
    app = request.app.state
    service: ScoringService = app.service
    limits = app.validator.settings
    # The document count and each judged text's size are checked before that text is built.
    documents = judged_texts(
        body.documents,
        body.rank_fields,
        max_documents=limits.max_responses_per_item,
        max_chars=limits.max_response_chars,
    )
    # One resolve over all documents checks every other limit (k, the query's size, ...) before any work.
    spec = app.validator.resolve(body.item((Message("user", body.query),), tuple(documents)))
    # Groups as the judge compares documents: a prompt's group, a pairwise pool, or one document alone.
    pairwise = app.grm.judge.mode == "pairwise"
    groups = plan_groups(len(documents), service.pool_size, anchor=body.anchor, pairwise=pairwise)
    specs = [dataclasses.replace(spec, responses=tuple(documents[i] for i in g)) for g in groups]
    # Adaptive k decides over all groups at once: the top_n in order (or the whole order) must be final.
    linked = Linked(tuple(tuple(g) for g in groups), len(documents), anchored(groups), body.top_n)
    results = await service.score(await call_context(request, app.grm), specs, linked=linked)
    ranked = rank(groups, results, len(documents), scale=service.vote_scale)[: body.top_n]
    prompt_tokens = sum(r.prompt_tokens for r in results)
    generation_tokens = sum(r.generation_tokens for r in results)
    return RerankResponse(
        id=getattr(request.state, "request_id", None) or "rerank",
        model=service.model_name,
        results=[
            RerankResultOut(
                index=d.index,
                relevance_score=round(d.relevance, 6),
                document=_returned(body.documents[d.index]) if body.return_documents else None,
                mean_score=None if d.mean_score is None else round(d.mean_score, 4),
                votes=d.votes,
            )
            for d in ranked
        ],
        usage=RerankUsage(
            prompt_tokens=prompt_tokens,
            generation_tokens=generation_tokens,
            total_tokens=prompt_tokens + generation_tokens,
        ),
        meta={
            "api_version": {"version": "2"},
            "billed_units": {"search_units": len(groups)},
            **({"warnings": [NO_SPANS]} if body.relevant_spans and body.relevant_spans.mode == "enabled" else {}),
            "grm": {
                "scale": [service.vote_scale.low, service.vote_scale.high],
                "votes": spec.votes,
                "groups": [
                    {"documents": list(g), "k_used": r.k_used, "stop_reason": r.stop_reason}
                    for g, r in zip(groups, results, strict=True)
                ],
            },
        },
    )


for _path in ("/v1/rerank", "/v2/rerank", "/rerank"):
    router.add_api_route(
        _path,
        rerank,
        methods=["POST"],
        response_model=RerankResponse,
        response_model_exclude_none=True,
        responses=_ERRORS,
        summary="Rerank documents for a query (Cohere / Jina / vLLM rerank API)",
    )
