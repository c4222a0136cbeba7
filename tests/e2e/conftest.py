"""One real grm-serve process (vLLM on CPU, the embedded model) shared by the whole e2e session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.conftest import DEPLOY
from tests.launcher import LaunchError, RunningServer, free_port, launch

RAY_APP = DEPLOY / "ray"

START_TIMEOUT_S = 900  # first start converts the GGUF (~30 s) and loads vLLM (~30 s); CI machines vary


@pytest.fixture(scope="session")
def server_url(grm_server: RunningServer) -> str:
    return grm_server.url


@pytest.fixture(scope="session")
def grm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log_path: Path = tmp_path_factory.mktemp("server") / "server.log"
    try:
        # Pinned: the real vLLM engine on the embedded model, whatever the environment says.
        # DEBUG: the log then holds every GRM prompt, which the trainer tests read back.
        args = ["--engine", "vllm", "--model", "embedded", "--log-level", "debug"]
        with launch(args, log=log_path, start_timeout_s=START_TIMEOUT_S) as srv:
            info = httpx.get(f"{srv.url}/v1/info", timeout=10).json()
            assert info["engine"] == "vllm", info
            yield RunningServer(srv.url, log_path)
    except LaunchError as exc:
        pytest.fail(str(exc))


@dataclass(frozen=True)
class RayCluster:
    url: str  # Ray's HTTP proxy
    metrics_url: str  # the node's metrics agent, what Prometheus scrapes on a Ray cluster


@contextmanager
def ray_serve_app(build_args: dict[str, Any], *, num_cpus: int) -> Iterator[RayCluster]:
    """A local Ray cluster of ``num_cpus`` logical CPUs running the deploy/ray app built from
    ``build_args`` behind Ray's HTTP proxy, ready when entered (``serve.run`` waits for every replica);
    Serve and Ray are shut down on exit."""
    import ray
    from ray import serve

    # The local cluster's raylet (and so every replica) inherits this process's environment.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(RAY_APP), os.environ.get("PYTHONPATH", "")])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    sys.path.insert(0, str(RAY_APP))
    import grm_ray_app

    metrics_port = free_port()
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        log_to_driver=False,
        _metrics_export_port=metrics_port,
    )
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(grm_ray_app.build(build_args), name="grm", route_prefix="/")
        yield RayCluster(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        serve.shutdown()
        ray.shutdown()
        sys.path.remove(str(RAY_APP))
