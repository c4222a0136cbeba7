"""Prometheus metrics, one registry per app (``grm_`` names, base units, bounded labels).

Every app builds its own :class:`Metrics` on a fresh ``CollectorRegistry``, so tests can build many
apps in one process without duplicated time series. Label values come from fixed sets (route paths
the app defines, an outcome derived from the status code, a sample status); never a request id, a
prompt or model text.

The engine's own metrics (vLLM's ``vllm:*`` families: running and waiting requests, KV-cache use,
prefix-cache hits, token counts) are collected from the engine at scrape time and served on the same
``/metrics`` endpoint by :class:`EngineCollector`, as ``vllm_*`` (see :func:`prometheus_name`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import __version__
from server.pipeline.adaptive import STOP_RULES
from server.pipeline.domain import ItemResult, SampleStatus

if TYPE_CHECKING:
    from server.engines import Engine

# Scoring routes whose requests are counted and timed; other paths (health, metrics, docs) are not.
SCORING_ROUTES = ("/v1/score", "/get_reward", "/v1/reward", "/v1/rerank", "/v2/rerank", "/rerank")

# A GRM request runs k samples of up to max_tokens each: seconds to many minutes on a CPU.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
QUEUE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
META_RM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# Mean score per response, 1 to 10 (deepseek-grm's votes): half-point buckets; other vote scales get
# the same 18 steps over their own range (reward_buckets).
REWARD_BUCKETS = tuple(x / 2 for x in range(2, 21))


def reward_buckets(low: float, high: float) -> tuple[float, ...]:
    """19 bucket bounds from ``low`` to ``high`` in 18 equal steps (1..10: :data:`REWARD_BUCKETS`)."""
    return tuple(round(low + (high - low) * i / 18, 6) for i in range(19))


def outcome_of(status: int) -> str:
    """A bounded outcome label for an HTTP status code."""
    if status < 400:
        return "ok"
    return {
        401: "unauthorized",
        413: "invalid",
        422: "invalid",
        429: "overloaded",
        499: "client_closed",
        503: "unavailable",
        504: "timeout",
    }.get(status, "invalid" if status < 500 else "error")


class Metrics:
    """grm-serve's own metrics, registered in ``registry`` (a new one when not given)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, vote_scale: tuple[float, float] = (1.0, 10.0)
    ) -> None:
        """``vote_scale``: the judge's vote range, which ``grm_reward_score``'s buckets span."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "grm_requests", "Scoring requests by route and outcome.", ["route", "outcome"], registry=r
        )
        self.request_duration = Histogram(
            "grm_request_duration_seconds",
            "End-to-end latency of scoring requests, admission queue included.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "grm_queue_wait_seconds",
            "Time an engine request waited at the work gate for room in the engine's batch.",
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.generate_duration = Histogram(
            "grm_generate_duration_seconds",
            "Time to generate the k samples of one item.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.meta_rm_duration = Histogram(
            "grm_meta_rm_duration_seconds",
            "Time the meta RM took to rate the samples of one item.",
            buckets=META_RM_BUCKETS,
            registry=r,
        )
        self.samples = Counter(
            "grm_samples",
            "GRM samples by status: every sample is parsed, unparseable or (soft votes) no_soft_score; every "
            "parsed sample is also kept (it votes) or filtered (dropped by the meta RM).",
            ["status"],
            registry=r,
        )
        self.prompt_tokens = Counter("grm_prompt_tokens", "Prompt tokens sent to the engine.", registry=r)
        self.generation_tokens = Counter("grm_generation_tokens", "Tokens the engine generated.", registry=r)
        self.reward = Histogram(
            "grm_reward_score",
            "Mean kept-vote score of each scored response, on the judge's vote scale (/v1/info judge.scale; "
            "deepseek-grm: 1-10).",
            buckets=reward_buckets(*vote_scale),
            registry=r,
        )
        self.inflight = Gauge("grm_inflight_requests", "Scoring requests being handled now.", registry=r)
        self.queued = Gauge(
            "grm_queued_requests", "Engine requests waiting at the work gate for room in the batch now.", registry=r
        )
        self.queued_samples = Gauge("grm_queued_samples", "Samples waiting at the work gate now.", registry=r)
        self.inflight_samples = Gauge("grm_inflight_samples", "Samples generating in the engine now.", registry=r)
        self.engine_capacity = Gauge(
            "grm_engine_capacity_samples",
            "Samples the work gate lets generate at once (--max-inflight-samples, else the engine's max_num_seqs).",
            registry=r,
        )
        self.estimated_wait = Gauge(
            "grm_estimated_wait_seconds",
            "Estimated wait of a new call behind the engine work admitted so far, at the measured drain rate.",
            registry=r,
        )
        self.rejected = Counter(
            "grm_rejected_requests",
            "Scoring calls refused with 429 overloaded, by reason: deadline (the queue could not finish them "
            "within their deadline) or calls (--max-concurrent-requests calls held).",
            ["reason"],
            registry=r,
        )
        self.deduplicated = Counter(
            "grm_deduplicated_requests",
            "Scoring requests answered by an identical request's job instead of a new one: joined while it "
            "ran (inflight) or from the recent-results cache (cached).",
            ["how"],
            registry=r,
        )
        self.dedup_cache_entries = Gauge(
            "grm_dedup_cache_entries", "Finished results kept to answer retries (--idempotency-cache-size).", registry=r
        )
        self.dedup_cache_bytes = Gauge(
            "grm_dedup_cache_bytes",
            "Estimated memory of the finished results kept to answer retries (--idempotency-cache-mib).",
            registry=r,
        )
        self.continued_samples = Counter(
            "grm_continued_samples",
            "GRM samples the generation budget cut before their scores, completed by a short guided "
            "continuation (two-pass format guidance). A high share means max_tokens is too small for the "
            "model's critiques.",
            registry=r,
        )
        self.soft_vote_passes = Counter(
            "grm_soft_vote_passes",
            "Scoring passes soft votes took: one-token engine requests that read the judge's distribution after a "
            "value's first token where the sample did not write it (e.g. '10' after '1'; docs/adaptive.md).",
            registry=r,
        )
        self.grouped_rows = Counter(
            "grm_grouped_rows",
            "Responses judged in one GRM prompt together with responses of other calls (grouping across "
            "calls, --group-window-s).",
            registry=r,
        )
        self.group_size = Histogram(
            "grm_group_size",
            "Responses judged together in one GRM prompt.",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
            registry=r,
        )
        self.samples_per_item = Histogram(
            "grm_samples_per_item",
            "GRM samples one item drew, over all its groups, by adaptive k's rule (off: always k per group).",
            ["adaptive"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128),
            registry=r,
        )
        self.samples_saved = Counter(
            "grm_samples_saved",
            "GRM samples adaptive k did not draw: k per group less the samples drawn, by rule.",
            ["adaptive"],
            registry=r,
        )
        self.adaptive_stops = Counter(
            "grm_adaptive_stops",
            "Adaptive items by why they stopped: the rule decided early (rank, stderr, confident) or only at k (k).",
            ["reason"],
            registry=r,
        )
        self.labels_ignored = Counter(
            "grm_labels_ignored",
            "Trainer labels (/get_reward, /v1/reward) not used as reference answers because the judge has no "
            "reference slot (--openrlhf-labels auto): those rows were judged without them.",
            registry=r,
        )
        self.build = Info("grm_build", "grm-serve version, model, judge, template and engine.", registry=r)
        for status in ("parsed", "unparseable", "no_soft_score", "filtered", "kept"):
            self.samples.labels(status)  # export zeros from the start, so rates exist before traffic
        for rule in STOP_RULES:
            self.samples_per_item.labels(rule)
            if rule != "off":
                self.samples_saved.labels(rule)
                self.adaptive_stops.labels(rule)
        self.adaptive_stops.labels("k")
        for how in ("inflight", "cached"):
            self.deduplicated.labels(how)
        for reason in ("deadline", "calls"):
            self.rejected.labels(reason)
        for route in SCORING_ROUTES:
            self.requests.labels(route, "ok")
            self.request_duration.labels(route)

    def set_build_info(self, *, model: str, template: str, engine: str, judge: str = "", mode: str = "") -> None:
        """``grm_build_info``: one series per process; its ``judge`` and ``judge_mode`` labels split any
        ``grm_*`` series by judge through a join (``* on(instance) group_left(judge) grm_build_info``)."""
        self.build.info(
            {"version": __version__, "model": model, "template": template, "engine": engine, "judge": judge,
             "judge_mode": mode}
        )  # fmt: skip

    def observe_items(self, results: Sequence[ItemResult]) -> None:
        """Per-item stages, samples, tokens and rewards of finished items."""
        for result in results:
            self.generate_duration.observe(result.generate_seconds)
            if result.k_meta is not None:
                self.meta_rm_duration.observe(result.meta_rm_seconds)
            parsed = [s for s in result.samples if s.status is SampleStatus.PARSED]
            kept = sum(1 for s in parsed if s.kept)
            self.samples.labels("parsed").inc(len(parsed))
            unreadable = sum(1 for s in result.samples if s.status is SampleStatus.NO_SOFT_SCORE)
            self.samples.labels("unparseable").inc(len(result.samples) - len(parsed) - unreadable)
            self.samples.labels("no_soft_score").inc(unreadable)
            self.soft_vote_passes.inc(sum(s.soft_passes for s in result.samples))
            self.samples.labels("kept").inc(kept)
            self.samples.labels("filtered").inc(len(parsed) - kept)
            self.continued_samples.inc(sum(1 for s in result.samples if s.continued))
            for group in result.groups:
                self.group_size.observe(len(group))
            self.samples_per_item.labels(result.adaptive).observe(len(result.samples))
            if result.adaptive != "off":
                self.samples_saved.labels(result.adaptive).inc(result.k * len(result.groups) - len(result.samples))
                self.adaptive_stops.labels(result.stop_reason).inc()
            self.prompt_tokens.inc(result.prompt_tokens)
            self.generation_tokens.inc(result.generation_tokens)
            for response in result.responses:
                if response.mean_score is not None:
                    self.reward.observe(response.mean_score)


def prometheus_name(family: Metric) -> Metric:
    """``family`` under a name that follows Prometheus' naming rules, which ``promtool check metrics``
    enforces and vLLM's names break in two ways:

    * ``:`` is reserved for recording rules: ``vllm:num_requests_running`` becomes ``vllm_num_requests_running``;
    * ``_total`` is for counters: the histogram ``vllm:iteration_tokens_total`` becomes ``vllm_iteration_tokens``.
    """
    name = family.name.replace(":", "_")
    if family.type != "counter" and name.endswith("_total"):
        name = name.removesuffix("_total")
    if name == family.name:
        return family
    renamed = Metric(name, family.documentation, family.type, family.unit)
    renamed.samples = [s._replace(name=name + s.name[len(family.name) :]) for s in family.samples]
    return renamed


class EngineCollector(Collector):
    """Serves the engine's own metric families (collected at scrape time) from an app's registry."""

    def __init__(self, engine: Callable[[], Engine | None]) -> None:
        self._engine = engine

    def collect(self) -> Iterable[Metric]:
        engine = self._engine()
        if engine is None:
            return []
        return [prometheus_name(m) for m in engine.metric_families()]

    def describe(self) -> Iterable[Metric]:
        return []  # unknown until the engine runs: never checked for duplicates at registration


class TenantCollector(Collector):
    """``grm_tenant_inflight_samples{tenant}``: each tenant's samples generating now, read at scrape time.

    The label is the first 12 characters of the tenant id (a digest of its API key; ``anonymous``
    without keys), so it is bounded by the configured keys and never shows a key.
    """

    def __init__(self, inflight: Callable[[], dict[str, int]]) -> None:
        self._inflight = inflight

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "grm_tenant_inflight_samples", "Samples generating in the engine now, per tenant.", labels=["tenant"]
        )
        for tenant, samples in sorted(self._inflight().items()):
            family.add_metric([tenant[:12] or "anonymous"], samples)
        return [family]


class RequestMetricsMiddleware:
    """Counts and times the scoring routes; keeps the in-flight gauge (pure ASGI, streaming-safe)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("path") if scope["type"] == "http" else None
        if route not in SCORING_ROUTES:
            await self.app(scope, receive, send)
            return
        status = 500  # when the app raises before answering
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.inflight.dec()
            self.metrics.requests.labels(route, outcome_of(status)).inc()
            self.metrics.request_duration.labels(route).observe(time.perf_counter() - started)
