"""grm-serve on Ray Serve: the same FastAPI app as N replicas, one engine each, behind Ray's HTTP proxy.

Quick start (from this folder, with grm-serve and ``ray[serve]`` installed in the cluster's Python):

    serve run grm_ray_app:build replicas=2                 # two replicas of the embedded CPU default
    serve run serve_config.yaml                            # GPU replicas with autoscaling (edit it first)

Builder arguments (``key=value`` on ``serve run``, or ``args:`` in the config file):

* ``replicas``: a fixed number of replicas (default 1), or ``min_replicas`` / ``max_replicas`` /
  ``target_ongoing_requests`` for Ray's autoscaler;
* ``num_gpus`` (per replica, default 0), ``num_cpus`` (default 1), ``tensor_parallel_size`` (default
  1: with more, the replica reserves one GPU bundle per shard and vLLM runs its workers on Ray);
* ``env``: extra environment variables for the replicas, as ``NAME=value,NAME=value``;
* any other key is a grm-serve setting (``model``, ``meta_rm``, ``k``, ``max_tokens`` ...), exactly
  as ``GRM_<KEY>`` would set it.

Every response carries ``x-grm-replica``: the Ray replica that answered. ``/metrics`` through the proxy
is one replica's view; every replica's ``grm_*`` series reach Prometheus through Ray's metrics agent
as ``ray_grm_*{replica=...}`` (``grm_ray_metrics.py``).

Routing: Ray's HTTP proxy reaches a small front deployment (``GRMFront``, ``front_replicas``, default
1) that checks each call's API key and size as grm-serve would, reads its body (bounded by
``front_buffer_mib``, default 1024, per front replica; ``grm_ray_front.py``) and forwards it to the
grm-serve replicas through a handle with a routing key. Calls that can share a GRM prompt, and
retries of one call, go to one replica (consistent hashing with bounded load, ``grm_ray_routing.py``),
so grouping across calls and dedup work as on one server; different prompts spread over the
replicas. ``affinity=false`` routes by load alone (Ray's default, the power of two choices).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from grm_ray_front import DEFAULT_BUFFER_MIB, build_front_app
from grm_ray_metrics import RayMetricsBridge
from grm_ray_routing import PromptAffinityRouter, router_state
from ray import serve
from ray.serve import Application
from ray.serve.config import RequestRouterConfig
from ray.serve.handle import DeploymentHandle
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.app import build_app
from server.config import Settings
from server.serving.state import AppState

DEPLOYMENT_KEYS = {
    "replicas", "min_replicas", "max_replicas", "target_ongoing_requests",
    "num_gpus", "num_cpus", "tensor_parallel_size", "env", "front_replicas", "front_buffer_mib", "affinity",
}  # fmt: skip


class ReplicaHeader:
    """Adds ``x-grm-replica: <replica id>`` to every HTTP response (which replica served it)."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.replica = replica.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-grm-replica", self.replica)]}
            await send(message)

        await self.app(scope, receive, send_tagged if scope["type"] == "http" else send)


def build_replica_app(settings: dict[str, Any]) -> FastAPI:
    """The grm-serve app of one replica; its startup returns only once the engine is ready, so no
    request reaches an engine that is still loading its weights."""
    app = build_app(Settings(**settings))
    replica = serve.get_replica_context().replica_id.unique_id
    app.add_middleware(ReplicaHeader, replica=replica)
    serve_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def until_ready(a: FastAPI) -> AsyncIterator[None]:
        async with serve_lifespan(a):
            state: AppState = a.state.grm
            await state.wait_ready()  # raises with the reason if the engine cannot start
            bridge = asyncio.create_task(RayMetricsBridge(state.metrics.registry, replica).run())
            try:
                yield
            finally:
                bridge.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bridge

    app.router.lifespan_context = until_ready
    return app


async def answer_in_process(
    app: ASGIApp, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """``app``'s answer to one HTTP call, as ``(status, raw headers, body)``.

    Headers travel as the raw bytes the client sent (a non-ASCII value passes through as it would to
    a lone server). Cancelling the call (the client left) cancels the request in the app, as a
    disconnect would.
    """
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://grm-serve") as client:
        url = f"{path}?{query}" if query else path
        response = await client.request(method, url, headers=headers, content=body)
    return response.status_code, list(response.headers.raw), response.content


@serve.deployment(name="grm-serve", health_check_period_s=10, health_check_timeout_s=30)
class GRMServe:
    """One grm-serve replica: one engine, the full HTTP API, reached through :class:`GRMFront`."""

    async def __init__(self, settings: dict[str, Any]) -> None:
        # Ray routes to the replica once this returns: the app's startup waits for the engine.
        self.app = build_replica_app(settings)
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()

    async def __del__(self) -> None:
        await self._lifespan.__aexit__(None, None, None)  # drain and shut the engine down

    def check_health(self) -> None:
        """Ray restarts a replica whose engine has died."""
        state: AppState = self.app.state.grm
        if state.failure is not None:
            raise RuntimeError(state.failure)

    async def forward(
        self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One HTTP call forwarded by the front deployment, answered by this replica's app in-process
        (:func:`answer_in_process`)."""
        return await answer_in_process(self.app, method, path, query, headers, body)


@serve.deployment(name="grm-front", health_check_period_s=10)
@serve.ingress()
class GRMFront:
    """Checks each call as grm-serve would, reads its body within bounds, and forwards it to the
    grm-serve replica its routing key picks (``grm_ray_front.py``)."""

    def __init__(self, backend: DeploymentHandle, settings: dict[str, Any], buffer_bytes: int) -> None:
        self.backend = backend
        self.settings = settings
        self.buffer_bytes = buffer_bytes

    def __serve_build_asgi_app__(self) -> ASGIApp:
        # Built in the replica, after __init__: Settings read the front's own environment, which has
        # the replicas' ``env`` (see build), so keys given as GRM_API_KEYS apply here too.
        return build_front_app(Settings(**self.settings), self.backend, buffer_bytes=self.buffer_bytes)

    def router_state(self) -> dict[str, Any]:
        """What this front's affinity router counts (:func:`grm_ray_routing.router_state`); for tests
        and debugging, through ``serve.get_app_handle(app).router_state.remote()``."""
        return router_state()


def _env(spec: str) -> dict[str, str]:
    pairs = [p for p in spec.split(",") if p]
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise ValueError(f"env must be NAME=value pairs separated by commas, got {bad}")
    return dict(p.split("=", 1) for p in pairs)


def build(args: dict[str, str]) -> Application:
    """Ray Serve application builder (``serve run grm_ray_app:build key=value ...``)."""
    settings = {k: v for k, v in args.items() if k not in DEPLOYMENT_KEYS}
    tp = int(args.get("tensor_parallel_size", 1))
    gpus = float(args.get("num_gpus", 0))
    cpus = float(args.get("num_cpus", 1))
    actor: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus}
    if env := _env(args.get("env", "")):
        actor["runtime_env"] = {"env_vars": env}
    options: dict[str, Any] = {"ray_actor_options": actor}
    if tp > 1:
        # One bundle for the replica, one GPU bundle per tensor-parallel shard, on one node; vLLM
        # places its workers in the replica's placement group.
        settings["tensor_parallel_size"] = tp
        settings["extra_engine_args"] = {"distributed_executor_backend": "ray"}
        actor["num_gpus"] = 0
        options["placement_group_bundles"] = [{"CPU": cpus}] + [{"GPU": 1.0}] * tp
        options["placement_group_strategy"] = "STRICT_PACK"
    if "min_replicas" in args or "max_replicas" in args:
        options["autoscaling_config"] = {
            "min_replicas": int(args.get("min_replicas", 1)),
            "max_replicas": int(args.get("max_replicas", 4)),
            # Concurrent scoring requests per replica Ray aims for before adding one.
            "target_ongoing_requests": float(args.get("target_ongoing_requests", 8)),
            "upscale_delay_s": 30,
            "downscale_delay_s": 600,  # a GPU replica takes minutes to load: keep it a while
        }
    else:
        options["num_replicas"] = int(args.get("replicas", 1))
    checked = Settings(**settings)
    # grm-serve's admission control answers 429 past its slots; let Ray queue and route first.
    options["max_ongoing_requests"] = int(checked.max_concurrent_requests)
    if args.get("affinity", "true").lower() not in ("false", "0", "no"):
        options["request_router_config"] = RequestRouterConfig(request_router_class=PromptAffinityRouter)
    backend = GRMServe.options(**options).bind(settings)
    # The front holds every call in flight to any replica: room for all the replicas' calls.
    most_replicas = int(args.get("max_replicas", args.get("replicas", 1)))
    # The front checks keys and the body limit with the replicas' settings, in the replicas' env.
    front_actor: dict[str, Any] = {"num_cpus": 0, **({"runtime_env": actor["runtime_env"]} if env else {})}
    front_options = {
        "num_replicas": int(args.get("front_replicas", 1)),
        "max_ongoing_requests": options["max_ongoing_requests"] * most_replicas,
        "ray_actor_options": front_actor,
    }
    buffer_bytes = int(float(args.get("front_buffer_mib", DEFAULT_BUFFER_MIB)) * 1024**2)
    if buffer_bytes < checked.max_body_bytes:
        raise ValueError(f"front_buffer_mib must hold one body of max_body_bytes={checked.max_body_bytes} bytes")
    return GRMFront.options(**front_options).bind(backend, settings, buffer_bytes)
