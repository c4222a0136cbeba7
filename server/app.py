"""The app factory: ``build_app(settings, engine=...)`` and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from meta_rm.base import MetaRM
from server import __version__
from server.api.context import unicode_body
from server.api.errors import install_error_handlers
from server.api.middleware import RequestIdMiddleware, add_edge_checks
from server.api.routes import compat, health, metrics, render, rerank, reward, score
from server.config import Settings
from server.engines import Engine
from server.ops.logs import AccessLogMiddleware
from server.ops.metrics import EngineCollector, Metrics, RequestMetricsMiddleware, TenantCollector
from server.pipeline.judges import vote_scale
from server.serving.policy_markup import get_markup
from server.serving.service import ScoringService
from server.serving.state import AppState
from server.serving.validation import Validator


def build_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    meta_rm: MetaRM | None = None,
    on_fatal: Callable[[int], None] | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the grm-serve ASGI app.

    Args:
        settings: validated server settings.
        engine: an engine to use instead of the one the settings name (tests pass a FakeEngine).
        meta_rm: a meta RM to use instead of the one the settings name (not started; the app starts it).
        on_fatal: called with an exit code when the engine fails to start or dies.
        registry: the Prometheus registry ``/metrics`` serves (default: a new one for this app).

    The engine starts in the background when the lifespan begins; ``/health/ready`` answers 503 until
    it is up. Each app owns its state; nothing is module-global.
    """
    scale = vote_scale(settings.judge_profile(), settings.aggregation)
    app_metrics = Metrics(registry, vote_scale=(scale.low, scale.high))
    state = AppState(settings=settings, engine=engine, meta_rm=meta_rm, on_fatal=on_fatal, metrics=app_metrics)
    app_metrics.registry.register(EngineCollector(lambda: state.engine if state.ready.is_set() else None))
    gate, admission = state.gate, state.admission
    app_metrics.queued.set_function(lambda: gate.waiting_requests)
    app_metrics.queued_samples.set_function(lambda: gate.queued)
    app_metrics.inflight_samples.set_function(lambda: gate.inflight)
    app_metrics.engine_capacity.set_function(lambda: gate.capacity)
    app_metrics.estimated_wait.set_function(lambda: admission.estimated_wait())
    app_metrics.registry.register(TenantCollector(lambda: gate.tenant_inflight))

    service = ScoringService(state)  # every scoring call runs through it
    # Every scoring request is checked by it; k_meta needs a meta RM (before readiness: the service's 503).
    validator = Validator(
        settings, refuse_k_meta=lambda: state.ready.is_set() and not state.has_meta_rm, judge=state.judge
    )
    app_metrics.dedup_cache_entries.set_function(lambda: service.dedup.cached)
    app_metrics.dedup_cache_bytes.set_function(lambda: service.dedup.cached_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.begin()
        try:
            yield
        finally:
            state.begin_drain()  # calls arriving from now on get 503 not_ready
            await service.grouper.close()  # waiting rows get 503 not_ready
            await service.dedup.close()  # jobs still queued or running are cancelled (503 not_ready)
            await state.close()

    app = FastAPI(
        title="grm-serve",
        version=__version__,
        summary="Generative reward model server with inference-time scaling (DeepSeek-GRM).",
        lifespan=lifespan,
    )
    app.state.grm = state
    app.state.service = service
    app.state.validator = validator
    app.state.markup = get_markup(settings.chat_markup, settings.policy_tokenizer)  # trainers' chat templates
    install_error_handlers(app)
    text_checked = [Depends(unicode_body)]  # before the schema: one 400 for a lone surrogate in any field
    for scoring in (score, compat, reward, rerank, render):
        app.include_router(scoring.router, dependencies=text_checked)
    app.include_router(health.router)
    app.include_router(metrics.router)
    open_paths = add_edge_checks(app, settings)
    if open_paths is not None:
        _document_bearer_auth(app, open_paths)
    app.add_middleware(RequestMetricsMiddleware, metrics=app_metrics)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


def _document_bearer_auth(app: FastAPI, open_paths: frozenset[str]) -> None:
    """Say in the OpenAPI document what :class:`APIKeyMiddleware` enforces: a bearer key on every
    route but the open ones, so generated clients and fuzzers send it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema.get("paths", {}).items():
                if path not in open_paths:
                    for operation in operations.values():
                        operation["security"] = [{"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
