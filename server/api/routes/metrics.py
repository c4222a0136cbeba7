"""``GET /metrics``: this app's registry in the Prometheus text format (engine metrics included)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.api.protocol import AUTH_ERRORS
from server.serving.state import AppState

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, responses=AUTH_ERRORS)
async def metrics(request: Request) -> Response:
    """grm-serve's metrics (``grm_*``) and the engine's (``vllm:*``), for Prometheus to scrape."""
    state: AppState = request.app.state.grm
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
