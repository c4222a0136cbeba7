"""One real grm-serve process (vLLM on CPU, the embedded model) shared by the whole e2e session."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_S = 900  # first start converts the GGUF (~30 s) and loads vLLM (~30 s); CI machines vary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class RunningServer:
    url: str
    log: Path  # the server's stdout/stderr, uvicorn's access log included

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


@pytest.fixture(scope="session")
def server_url(grm_server: RunningServer) -> str:
    return grm_server.url


@pytest.fixture(scope="session")
def grm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    port = _free_port()
    log_path: Path = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"grm-serve exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"grm-serve not ready after {START_TIMEOUT_S}s:\n{log_path.read_text()[-4000:]}")
            time.sleep(2)
        yield RunningServer(url, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
