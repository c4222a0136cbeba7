"""Start a grm-serve process on a free port and wait until it is ready (tests and benchmarks).

with launch(["--engine", "fake"]) as srv:
    httpx.post(f"{srv.url}/v1/score", ...)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class RunningServer:
    """A launched server as the tests read it: its URL and its log (JSON lines, vLLM's plain lines beside)."""

    url: str
    log: Path  # the server's stdout/stderr, its JSON access log included

    def _json_records(self) -> Iterator[dict]:
        for line in self.log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # vLLM's own engine-process lines are plain text
            if isinstance(record, dict):
                yield record

    def access_count(self, route: str) -> int:
        """How many successful POSTs to ``route`` the server's JSON access log holds so far."""
        return sum(
            r.get("logger") == "grm_serve.access" and r.get("path") == route and r.get("status") == 200
            for r in self._json_records()
            if r.get("method") == "POST"
        )

    def records(self, message: str) -> list[dict]:
        """The server's JSON log records with this message (a server run at DEBUG logs every GRM prompt)."""
        return [r for r in self._json_records() if r.get("message") == message]


class LaunchError(RuntimeError):
    """The server exited or did not become ready; the message ends with its log tail."""


@dataclass(frozen=True)
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def rss_bytes(self) -> int:
        """Resident memory of the server and all its descendants (vLLM's engine core included)."""
        return sum(_rss(pid) for pid in [self.process.pid, *_descendants(self.process.pid)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            out.append(child)
            out.extend(_descendants(child))
    return out


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextlib.contextmanager
def launch(
    args: Sequence[str] = (),
    *,
    log: Path,
    command: Sequence[str] | None = None,
    start_timeout_s: float = 900,
    env: dict[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """Run ``python -m server --port P *args`` (or ``command`` with the port appended) until the block ends.

    Raises:
        LaunchError: if the process exits or is not ready within ``start_timeout_s``.
    """
    port = free_port()
    # Hermetic: a GRM_* variable of the caller's shell (GRM_ENGINE=fake, say) must not change what runs.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GRM_")}
    argv = [*command, str(port)] if command else [sys.executable, "-m", "server", "--port", str(port), *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**inherited, "PYTHONUNBUFFERED": "1", **(env or {})}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise LaunchError(f"grm-serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise LaunchError(f"grm-serve not ready after {start_timeout_s}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield ServerProcess(url, proc, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
