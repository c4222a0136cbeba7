"""SIGTERM with requests in flight: they all complete, new work is refused, the process exits 0."""

import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.api.conftest import ITEM

SCRIPT = Path(__file__).with_name("_slow_fake_server.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_drains_in_flight_requests_and_exits_zero():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(port), "1.5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.1)

        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(httpx.post, f"{url}/v1/score", json=ITEM, timeout=30) for _ in range(4)]
            time.sleep(0.5)  # all four accepted and generating
            proc.send_signal(signal.SIGTERM)
            results = [f.result() for f in futures]
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stdout.read() if proc.stdout else ""
    assert [r.status_code for r in results] == [200] * 4, log
    assert all(r.json()["responses"][0]["votes"] == 4 for r in results)
    assert code == 0, log
    assert "draining" in log
