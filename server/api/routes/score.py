"""``POST /v1/score``: one item or a batch of items."""

from __future__ import annotations

from fastapi import APIRouter, Request

from server.api.context import call_context
from server.api.protocol import (
    SCORING_ERRORS,
    ItemScoreOut,
    ResponseScoreOut,
    SampleOut,
    ScoreBatchRequest,
    ScoreBatchResponse,
    ScoreBody,
    ScoreResponse,
    Timings,
    Usage,
)
from server.pipeline.domain import ItemResult, SampleStatus
from server.serving.service import ScoringService

router = APIRouter(tags=["score"])

_ERRORS = SCORING_ERRORS


def to_output(result: ItemResult, return_samples: bool, template: str) -> ItemScoreOut:
    """The HTTP view of one item's result."""
    samples = None
    if return_samples:
        samples = []
        for s in result.samples:
            members = result.groups[s.group]
            samples.append(
                SampleOut(
                    group=s.group,
                    responses=list(members),
                    permutation=[members[i] for i in s.permutation],
                    status=s.status.value,
                    principles=s.principles,
                    critique=s.critique,
                    scores=list(s.scores) if s.scores is not None else None,
                    soft_scores=list(s.soft_scores) if s.soft_scores is not None else None,
                    soft_source=s.soft_source,
                    finish_reason=s.finish_reason,
                    generation_tokens=s.generation_tokens,
                    meta_score=s.meta_score,
                    kept=s.kept,
                    continued=s.continued,
                    text=s.text if s.status is not SampleStatus.PARSED else None,
                )
            )
    return ItemScoreOut(
        template=template,
        responses=[
            ResponseScoreOut(
                index=i,
                score=r.score,
                mean_score=r.mean_score,
                normalized_score=r.normalized_score,
                votes=r.votes,
                valid_samples=r.valid_samples,
                status=r.status.value,
                group_size=size,
            )
            for i, (r, size) in enumerate(zip(result.responses, result.group_sizes, strict=True))
        ],
        k=result.k,
        k_used=result.k_used,
        stop_reason=result.stop_reason,
        rounds=result.rounds,
        votes=result.votes,
        k_meta=result.k_meta,
        valid_samples=sum(s.status is SampleStatus.PARSED for s in result.samples),
        total_samples=len(result.samples),
        usage=Usage(prompt_tokens=result.prompt_tokens, generation_tokens=result.generation_tokens),
        timings=Timings(
            generate_seconds=round(result.generate_seconds, 4), meta_rm_seconds=round(result.meta_rm_seconds, 4)
        ),
        samples=samples,
    )


@router.post("/v1/score", response_model=ScoreResponse | ScoreBatchResponse, responses=_ERRORS)
async def score(body: ScoreBody, request: Request) -> ScoreResponse | ScoreBatchResponse:
    """Score the responses of one item, or of every item of a batch, with k GRM samples each."""
    app = request.app.state
    service: ScoringService = app.service
    items = body.items if isinstance(body, ScoreBatchRequest) else [body]
    app.validator.check_items(len(items))
    specs = [app.validator.resolve(item.to_item()) for item in items]
    call = await call_context(request, app.grm)
    # An item asking for its samples is judged alone: shared samples would show other calls' responses.
    results = await service.score(call, specs, groupable=[not item.return_samples for item in items])
    outputs = [
        to_output(r, item.return_samples, service.template_of(spec))
        for r, item, spec in zip(results, items, specs, strict=True)
    ]
    model, scale = service.model_name, (service.vote_scale.low, service.vote_scale.high)
    judge = {"scale": scale, "judge_mode": app.grm.judge.mode}
    if isinstance(body, ScoreBatchRequest):
        return ScoreBatchResponse(model=model, template=service.template_name, items=outputs, **judge)
    return ScoreResponse(model=model, **judge, **outputs[0].model_dump())
