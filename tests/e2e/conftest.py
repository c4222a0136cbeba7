"""One real grm-serve process (vLLM on CPU, the embedded model) shared by the whole e2e session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.launcher import LaunchError, launch

START_TIMEOUT_S = 900  # first start converts the GGUF (~30 s) and loads vLLM (~30 s); CI machines vary


@dataclass(frozen=True)
class RunningServer:
    url: str
    log: Path  # the server's stdout/stderr, its JSON access log included

    def access_count(self, route: str) -> int:
        """How many successful POSTs to ``route`` the server's JSON access log holds so far."""
        count = 0
        for line in self.log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # vLLM's own engine-process lines are plain text
            if record.get("logger") == "grm_serve.access" and record.get("path") == route:
                count += record.get("status") == 200 and record.get("method") == "POST"
        return count

    def records(self, message: str) -> list[dict]:
        """The server's JSON log records with this message (the session server logs at DEBUG)."""
        out = []
        for line in self.log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("message") == message:
                out.append(record)
        return out


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
