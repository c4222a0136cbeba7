"""Liveness, readiness and ``/v1/info``."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request

from meta_rm.selection import default_k_meta
from server import __version__
from server.api.info_protocol import AdapterOut, InfoResponse, JudgeOut, MetaRMOut
from server.api.protocol import AUTH_ERRORS, error_responses
from server.config import Settings
from server.pipeline.judges import Judge, vote_scale
from server.serving.state import AppState

router = APIRouter(tags=["health"])
_ERRORS = error_responses(503)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.grm
    return state


@router.get("/health/live", responses=_ERRORS)
async def live(request: Request) -> dict[str, str]:
    """200 while the process can make progress; 503 once the engine has died."""
    await _state(request).check_live()
    return {"status": "alive"}


@router.get("/health/ready", responses=_ERRORS)
async def ready(request: Request) -> dict[str, str]:
    """200 once the engine is up and can take requests; 503 while starting, draining or dead."""
    _state(request).check_ready()
    return {"status": "ready"}


@router.get("/v1/info", response_model=InfoResponse, responses=AUTH_ERRORS)
async def info(request: Request) -> InfoResponse:
    """Model, template version, defaults, limits, engine and package version."""
    state = _state(request)
    s = state.settings
    engine_info = state.engine.info if state.engine is not None else None
    defaults: dict[str, float | int] = {"k": s.k, "temperature": s.temperature, "top_p": s.top_p}
    defaults["max_tokens"] = s.max_tokens
    if state.meta_rm is not None:
        defaults["k_meta"] = s.k_meta if s.k_meta is not None else default_k_meta(s.k)
    if s.adaptive != "off":
        defaults["k_min"] = s.adaptive_k_min
    defaults["adaptive_epsilon"] = s.stderr_epsilon()  # any call may ask for stderr; relative to the vote scale
    defaults["adaptive_delta"] = s.adaptive_delta  # any call may ask for confident
    return InfoResponse(
        version=__version__,
        model=engine_info.model if engine_info else s.model,
        engine=engine_info.name if engine_info else s.engine,
        engine_version=engine_info.version if engine_info else "not started",
        max_model_len=engine_info.max_model_len if engine_info else None,
        template=state.judge.template_name(principles=False, reference=False),
        judge=_judge_out(state.judge, s, request.app.state.service.pool_size),
        format_guidance=s.format_guidance,
        adaptive=s.adaptive,
        votes=s.votes,
        meta_rm=MetaRMOut(**dataclasses.asdict(state.meta_rm.info)) if state.meta_rm is not None else None,
        adapter=AdapterOut(**dataclasses.asdict(state.adapter)) if state.adapter is not None else None,
        defaults=defaults,
        limits={
            "max_k": s.max_k,
            "max_temperature": s.max_temperature,
            "max_tokens": s.max_tokens_limit,
            "max_group_size": s.max_group_size,
            "max_responses_per_item": s.max_responses_per_item,
            "max_items_per_batch": s.max_items_per_batch,
            "max_body_bytes": s.max_body_bytes,
            "max_render_bytes": s.max_render_bytes,
            "request_timeout_s": s.request_timeout_s,
            "max_concurrent_requests": s.max_concurrent_requests,
            "max_inflight_samples": state.gate.capacity,
            **({"max_queue_wait_s": s.max_queue_wait_s} if s.max_queue_wait_s is not None else {}),
            "max_response_chars": s.max_response_chars,
            "max_conversation_chars": s.max_conversation_chars,
        },
    )


def _judge_out(judge: Judge, s: Settings, pool: int) -> JudgeOut:
    pairwise = judge.mode == "pairwise"
    scale = vote_scale(judge, s.aggregation)
    return JudgeOut(
        name=judge.name,
        source="file" if s.judge_file is not None else "builtin",
        mode=judge.mode,
        scale=(scale.low, scale.high),
        output_scale=(judge.scale.low, judge.scale.high),
        takes_reference=judge.takes_reference,
        takes_principles=judge.takes_principles,
        pool_size=pool,
        groups_across_calls=judge.mode != "single" and s.group_window_s > 0,
        pairing=s.pairing if pairwise else None,
        aggregation=s.aggregation if pairwise else None,
    )
