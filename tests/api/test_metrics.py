"""``GET /metrics``: grm-serve's own series, the engine's, per-app registries, promtool's lint."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meta_rm.fake import FakeMetaRM
from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine, budget_cut_script
from server.ops.metrics import outcome_of
from tests.api.conftest import ITEM, running_app


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape[(name, tuple(sorted(labels.items())))]


async def scrape(client: httpx.AsyncClient) -> dict:
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return samples_of(r.text)


async def test_a_scored_request_shows_up_in_every_grm_series():
    async with running_app(FakeEngine()) as client:
        before = await scrape(client)
        assert value(before, "grm_requests_total", route="/v1/score", outcome="ok") == 0
        r = await client.post("/v1/score", json=ITEM)
        assert r.status_code == 200
        body = r.json()
        after = await scrape(client)
    assert value(after, "grm_requests_total", route="/v1/score", outcome="ok") == 1
    assert value(after, "grm_request_duration_seconds_count", route="/v1/score") == 1
    assert value(after, "grm_queue_wait_seconds_count") == 2  # one per engine request: the two orders
    assert value(after, "grm_generate_duration_seconds_count") == 1
    assert value(after, "grm_meta_rm_duration_seconds_count") == 0  # no meta RM configured
    assert value(after, "grm_samples_total", status="parsed") == body["valid_samples"] == 4
    assert value(after, "grm_samples_total", status="kept") == 4
    assert value(after, "grm_samples_total", status="filtered") == 0
    assert value(after, "grm_samples_total", status="unparseable") == 0
    assert value(after, "grm_prompt_tokens_total") == body["usage"]["prompt_tokens"] > 0
    assert value(after, "grm_generation_tokens_total") == body["usage"]["generation_tokens"] > 0
    assert value(after, "grm_reward_score_count") == 2
    assert value(after, "grm_reward_score_sum") == pytest.approx(sum(x["mean_score"] for x in body["responses"]))
    assert value(after, "grm_inflight_requests") == 0
    assert value(after, "grm_queued_requests") == 0
    build = [k for k in after if k[0] == "grm_build_info"]
    assert len(build) == 1 and ("model", "fake-grm") in build[0][1]


async def test_the_engines_own_metrics_are_served_on_the_same_endpoint():
    async with running_app(FakeEngine()) as client:
        await client.post("/v1/score", json=ITEM)
        after = await scrape(client)
    # Served with ':' turned into '_', as Prometheus' naming rules (and promtool) want.
    assert value(after, "fake_engine_requests_total") >= 1  # one engine request per response group
    assert value(after, "fake_engine_num_requests_running") == 0


async def test_outcomes_and_unparseable_samples_are_counted():
    def garbage(request):
        return ["no scores here"] * request.n

    async with running_app(FakeEngine(garbage)) as client:
        assert (await client.post("/v1/score", json={**ITEM, "k": 99})).status_code == 400
        assert (await client.post("/v1/score", json={"query": "q"})).status_code == 422
        assert (await client.post("/v1/score", json=ITEM)).status_code == 200
        await client.get("/health/ready")
        after = await scrape(client)
    assert value(after, "grm_requests_total", route="/v1/score", outcome="invalid") == 2
    assert value(after, "grm_requests_total", route="/v1/score", outcome="ok") == 1
    assert value(after, "grm_samples_total", status="unparseable") == 4
    assert value(after, "grm_samples_total", status="parsed") == 0
    assert value(after, "grm_reward_score_count") == 0  # no valid sample: no reward to record
    assert not any(dict(labels).get("route") == "/health/ready" for _, labels in after)


async def test_meta_rm_kept_and_filtered_samples():
    async with running_app(FakeEngine(), meta_rm=FakeMetaRM()) as client:
        r = await client.post("/v1/score", json={**ITEM, "k": 4, "k_meta": 1})
        assert r.status_code == 200
        after = await scrape(client)
    assert value(after, "grm_samples_total", status="kept") == 1
    assert value(after, "grm_samples_total", status="filtered") == 3
    assert value(after, "grm_meta_rm_duration_seconds_count") == 1


async def test_get_reward_is_counted_under_its_own_route():
    async with running_app(FakeEngine()) as client:
        body = {"query": ["Q? yes", "Q? no"], "prompts": ["Q? ", "Q? "]}
        assert (await client.post("/get_reward", json=body)).status_code == 200
        after = await scrape(client)
    assert value(after, "grm_requests_total", route="/get_reward", outcome="ok") == 1
    assert value(after, "grm_requests_total", route="/v1/score", outcome="ok") == 0


async def test_each_app_owns_its_registry():
    # Building several apps in one process must neither raise "Duplicated timeseries" nor share counts.
    apps = [build_app(Settings(engine="fake"), engine=FakeEngine()) for _ in range(3)]
    registries = {id(a.state.grm.metrics.registry) for a in apps}
    assert len(registries) == 3
    async with running_app(FakeEngine()) as first, running_app(FakeEngine()) as second:
        await first.post("/v1/score", json=ITEM)
        assert value(await scrape(first), "grm_requests_total", route="/v1/score", outcome="ok") == 1
        assert value(await scrape(second), "grm_requests_total", route="/v1/score", outcome="ok") == 0


async def test_metrics_are_open_to_scrapers_unless_made_private():
    async with running_app(FakeEngine(), api_keys="k1") as client:
        assert (await client.get("/metrics")).status_code == 200
    async with running_app(FakeEngine(), api_keys="k1", metrics_public=False) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"authorization": "Bearer k1"})).status_code == 200


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "ok"),
        (400, "invalid"),
        (401, "unauthorized"),
        (413, "invalid"),
        (422, "invalid"),
        (429, "overloaded"),
        (499, "client_closed"),
        (500, "error"),
        (503, "unavailable"),
        (504, "timeout"),
    ],
)
def test_outcome_labels_are_a_small_fixed_set(status, outcome):
    assert outcome_of(status) == outcome


@pytest.mark.ops
async def test_promtool_accepts_the_exposition():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (make test does)"
    async with running_app(FakeEngine(), meta_rm=FakeMetaRM()) as client:
        await client.post("/v1/score", json=ITEM)
        text = (await client.get("/metrics")).text
    run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_engine_names_are_made_promtool_clean():
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    from server.ops.metrics import prometheus_name

    counter = CounterMetricFamily("vllm:prompt_tokens", "Prompt tokens.", labels=["model_name"])
    counter.add_metric(["m"], 3)
    histogram = HistogramMetricFamily("vllm:iteration_tokens_total", "Tokens per step.")
    histogram.add_metric([], [("1", 1), ("+Inf", 2)], sum_value=5)
    c, h = prometheus_name(counter), prometheus_name(histogram)
    assert c.name == "vllm_prompt_tokens" and [s.name for s in c.samples] == ["vllm_prompt_tokens_total"]
    assert c.samples[0].labels == {"model_name": "m"} and c.samples[0].value == 3
    assert h.name == "vllm_iteration_tokens"
    assert {s.name for s in h.samples} == {"vllm_iteration_tokens_bucket", "vllm_iteration_tokens_count"} | {
        "vllm_iteration_tokens_sum"
    }
    clean = CounterMetricFamily("grm_x", "x")
    assert prometheus_name(clean) is clean


async def test_continued_samples_are_counted_and_shown():
    async with running_app(FakeEngine(budget_cut_script)) as client:
        before = await scrape(client)
        r = await client.post("/v1/score", json={**ITEM, "max_tokens": 256, "return_samples": True})
        after = await scrape(client)
    assert value(before, "grm_continued_samples_total") == 0
    assert r.status_code == 200
    samples = r.json()["samples"]
    assert len(samples) == 4 and all(s["continued"] and s["status"] == "parsed" for s in samples)
    assert value(after, "grm_continued_samples_total") == 4


def test_every_grm_series_is_in_the_ops_metric_table():
    from pathlib import Path

    from server.ops.metrics import Metrics

    table = (Path(__file__).resolve().parents[2] / "deploy" / "README.md").read_text()
    names = {f.name for f in Metrics().registry.collect() if f.name.startswith("grm_")}
    assert names, "no grm_ series found"
    missing = sorted(n for n in names if f"`{n}" not in table)
    assert not missing, f"deploy/README.md's metric table lacks {missing}"
