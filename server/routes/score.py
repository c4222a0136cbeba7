"""``POST /v1/score``: one item or a batch of items."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Request, Response

from server.admission import cancel_on_disconnect
from server.config import Settings
from server.domain import ItemResult, Message, SampleStatus
from server.errors import invalid_request, to_api_error
from server.protocol import (
    ErrorResponse,
    ItemScoreOut,
    ResponseScoreOut,
    SampleOut,
    ScoreBatchRequest,
    ScoreBatchResponse,
    ScoreBody,
    ScoreItem,
    ScoreResponse,
    Timings,
    Usage,
)
from server.scoring import ScoreSpec
from server.state import AppState

log = logging.getLogger(__name__)
router = APIRouter(tags=["score"])
TIMEOUT_HEADER = "x-request-timeout"

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 413, 422, 500, 503, 504)}


def to_spec(item: ScoreItem, settings: Settings) -> ScoreSpec:
    """Resolve an item's sampling choices against the server defaults and limits.

    Raises:
        APIError: 400 when a value exceeds its configured maximum.
    """
    k = item.k if item.k is not None else settings.k
    temperature = item.temperature if item.temperature is not None else settings.temperature
    max_tokens = item.max_tokens if item.max_tokens is not None else settings.max_tokens
    if item.k_meta is not None and item.k_meta > k:
        raise invalid_request(f"k_meta = {item.k_meta} exceeds k = {k}")
    checks = [
        (len(item.responses), settings.max_responses_per_item, "responses per item", "max_responses_per_item"),
        (k, settings.max_k, "k", "max_k"),
        (temperature, settings.max_temperature, "temperature", "max_temperature"),
        (max_tokens, settings.max_tokens_limit, "max_tokens", "max_tokens_limit"),
        (max(map(len, item.responses)), settings.max_response_chars, "characters in a response", "max_response_chars"),
        (_conversation_chars(item), settings.max_conversation_chars, "conversation chars", "max_conversation_chars"),
    ]
    for value, limit, what, name in checks:
        if value > limit:
            raise invalid_request(f"{what} = {value} exceeds the server limit {name} = {limit}")
    if item.messages is not None:
        messages = tuple(Message(m.role, m.content) for m in item.messages)
    else:
        messages = (Message("user", item.query or ""),)
    return ScoreSpec(
        messages=messages,
        responses=tuple(item.responses),
        k=k,
        temperature=temperature,
        top_p=settings.top_p,
        max_tokens=max_tokens,
        seed=item.seed,
        k_meta=item.k_meta if item.k_meta is not None else settings.k_meta,
    )


def _conversation_chars(item: ScoreItem) -> int:
    if item.messages is not None:
        return sum(len(m.content) for m in item.messages)
    return len(item.query or "")


def to_output(result: ItemResult, return_samples: bool) -> ItemScoreOut:
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
                    finish_reason=s.finish_reason,
                    generation_tokens=s.generation_tokens,
                    meta_score=s.meta_score,
                    kept=s.kept,
                    text=s.text if s.status is SampleStatus.UNPARSEABLE else None,
                )
            )
    return ItemScoreOut(
        responses=[
            ResponseScoreOut(
                index=i,
                score=r.score,
                mean_score=r.mean_score,
                votes=r.votes,
                valid_samples=r.valid_samples,
                status=r.status.value,
            )
            for i, r in enumerate(result.responses)
        ],
        k=result.k,
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
    state: AppState = request.app.state.grm
    settings = state.settings
    items = body.items if isinstance(body, ScoreBatchRequest) else [body]
    if len(items) > settings.max_items_per_batch:
        raise invalid_request(
            f"{len(items)} items exceed the server limit max_items_per_batch = {settings.max_items_per_batch}"
        )
    specs = [to_spec(item, settings) for item in items]
    if state.meta_rm is None and state.ready.is_set() and any(item.k_meta is not None for item in items):
        raise invalid_request("k_meta was given but the server has no meta RM (start it with --meta-rm)")
    results = await run_scoring(state, request, specs)
    if results is None or state.engine is None:
        return Response(status_code=CLIENT_CLOSED)  # type: ignore[return-value]
    outputs = [to_output(r, item.return_samples) for r, item in zip(results, items, strict=True)]
    model, template = state.engine.info.model, state.template.name
    if isinstance(body, ScoreBatchRequest):
        return ScoreBatchResponse(model=model, template=template, items=outputs)
    return ScoreResponse(model=model, template=template, **outputs[0].model_dump())


CLIENT_CLOSED = 499  # nginx's "client closed request": logged, never delivered


def deadline_of(request: Request, settings: Settings) -> float:
    """The request's deadline in seconds: ``X-Request-Timeout`` when given, capped by the server's maximum.

    Raises:
        APIError: 400 for a header that is not a positive number.
    """
    header = request.headers.get(TIMEOUT_HEADER)
    if header is None:
        return settings.request_timeout_s
    try:
        value = float(header)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise invalid_request(f"{TIMEOUT_HEADER} must be a positive number of seconds, got {header!r}")
    return min(value, settings.request_timeout_s)


async def run_scoring(state: AppState, request: Request, specs: list[ScoreSpec]) -> list[ItemResult] | None:
    """Run resolved items through the pipeline: admission slot, deadline, cancellation on disconnect.

    Returns:
        The results, or None when the client disconnected (its engine work has been aborted).

    Raises:
        APIError: 503 while the engine is not up or draining, 429 when no slot frees up in time,
            504 past the deadline, the mapped status otherwise.
    """
    if not state.ready.is_set() or state.engine is None:
        raise to_api_error(state.unavailable_error())
    deadline = deadline_of(request, state.settings)
    request_id = getattr(request.state, "request_id", None)

    async def work() -> list[ItemResult]:
        try:
            async with asyncio.timeout(deadline):
                return await state.scorer.score_many(specs, request_id)
        except* Exception as group:
            cause = _first(group)
            error = to_api_error(cause)
            if error.status == 500:
                log.error("scoring failed unexpectedly", exc_info=cause)
            raise error from None

    queued = time.perf_counter()
    async with state.admission.slot():
        state.metrics.queue_wait.observe(time.perf_counter() - queued)
        results = await cancel_on_disconnect(request, work())
    if results is not None:
        state.metrics.observe_items(results)
    return results


def _first(group: BaseExceptionGroup) -> BaseException:
    """The innermost first exception of a (nested) TaskGroup failure."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
