"""Ray Serve scale-out: a local Ray cluster, the deploy/ray app with two replicas of the embedded CPU
default, requests through Ray's HTTP proxy, and both replicas serving some of them."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.deploy.conftest import DEPLOY
from tests.launcher import free_port

pytestmark = pytest.mark.e2e

RAY_APP = DEPLOY / "ray"
ITEM = {"query": "Name a primary colour.", "responses": ["Red.", "Purple."], "k": 1, "max_tokens": 64}


@pytest.fixture(scope="module")
def ray_serve_url() -> Iterator[str]:
    ray = pytest.importorskip("ray", reason="ray[serve] is part of the dev extra")
    from ray import serve

    # The local cluster's raylet (and so every replica) inherits this process's environment.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(RAY_APP), os.environ.get("PYTHONPATH", "")])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    sys.path.insert(0, str(RAY_APP))
    import grm_ray_app

    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # Two engines share this machine's cores: no OpenMP pinning, a small KV cache each.
        app = grm_ray_app.build({"replicas": "2", "env": "VLLM_CPU_OMP_THREADS_BIND=nobind,VLLM_CPU_KVCACHE_SPACE=1"})
        serve.run(app, name="grm", route_prefix="/")  # returns once both replicas' engines are ready
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        sys.path.remove(str(RAY_APP))


async def test_two_replicas_behind_rays_proxy_both_serve(ray_serve_url):
    async with httpx.AsyncClient(base_url=ray_serve_url, timeout=600) as client:
        assert (await client.get("/health/ready")).status_code == 200
        info = (await client.get("/v1/info")).json()
        assert info["model"] == "SmolLM2-135M-Instruct" and info["engine"] == "vllm"
        replies = await asyncio.gather(*(client.post("/v1/score", json={**ITEM, "seed": i}) for i in range(8)))
    assert [r.status_code for r in replies] == [200] * 8
    for r in replies:
        assert r.json()["total_samples"] == 1
    served = Counter(r.headers["x-grm-replica"] for r in replies)
    print(f"requests per replica: {dict(served)}")
    assert len(served) == 2, served  # both replicas answered some of the eight
