"""Ray Serve scale-out: a local Ray cluster, the deploy/ray app with two replicas of the embedded CPU
default, requests through Ray's HTTP proxy, and both replicas serving some of them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RayCluster, ray_serve_app

pytestmark = pytest.mark.e2e

ITEM = {"query": "Name a primary colour.", "responses": ["Red.", "Purple."], "k": 1, "max_tokens": 64}
# Calls with distinct seeds: the front hashes each to a replica (rendezvous over replica ids that are
# new every run), so all of them land on one of the two with chance 2 ** (1 - CALLS): 1/128 with 8.
CALLS = 16


@pytest.fixture(scope="module")
def ray_serve() -> Iterator[RayCluster]:
    pytest.importorskip("ray", reason="ray[serve] is part of the dev extra")
    # Two engines share this machine's cores: no OpenMP pinning, a small KV cache each.
    # Pinned to the real engine on the embedded model, whatever GRM_* the environment holds.
    env = "VLLM_CPU_OMP_THREADS_BIND=nobind,VLLM_CPU_KVCACHE_SPACE=1"
    with ray_serve_app({"replicas": "2", "env": env, "engine": "vllm", "model": "embedded"}, num_cpus=4) as cluster:
        yield cluster


def scored_ok_per_replica(metrics_url: str) -> dict[str, float]:
    """``ray_grm_requests_total{route="/v1/score",outcome="ok"}`` by replica, from Ray's metrics agent."""
    text = httpx.get(metrics_url, timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            wanted = labels.get("route") == "/v1/score" and labels.get("outcome") == "ok"
            if sample.name == "ray_grm_requests_total" and wanted:
                out[labels["replica"]] = out.get(labels["replica"], 0.0) + sample.value
    return out


async def test_two_replicas_behind_rays_proxy_both_serve_and_their_counters_add_up(ray_serve):
    async with httpx.AsyncClient(base_url=ray_serve.url, timeout=600) as client:
        assert (await client.get("/health/ready")).status_code == 200
        info = (await client.get("/v1/info")).json()
        assert info["model"] == "SmolLM2-135M-Instruct" and info["engine"] == "vllm"
        replies = await asyncio.gather(*(client.post("/v1/score", json={**ITEM, "seed": i}) for i in range(CALLS)))
    assert [r.status_code for r in replies] == [200] * CALLS
    for r in replies:
        assert r.json()["total_samples"] == 1
    served = Counter(r.headers["x-grm-replica"] for r in replies)
    print(f"requests per replica: {dict(served)}")
    assert len(served) == 2, served  # both replicas answered some of the calls
    # Every replica's counter reaches Prometheus (Ray exports every few seconds): they sum to the calls sent.
    deadline = time.monotonic() + 90
    counts = scored_ok_per_replica(ray_serve.metrics_url)
    while sum(counts.values()) != CALLS and time.monotonic() < deadline:
        await asyncio.sleep(1)
        counts = scored_ok_per_replica(ray_serve.metrics_url)
    print(f"ray_grm_requests_total by replica: {counts}")
    assert sum(counts.values()) == CALLS, counts
    assert counts == {replica: float(n) for replica, n in served.items()}
