"""One real grm-serve process (vLLM on CPU, the embedded model) shared by the whole e2e session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.launcher import LaunchError, RunningServer, launch

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
