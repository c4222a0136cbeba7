"""SIGTERM with requests in flight: they all complete, new work is refused, the process exits 0."""

import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.api.conftest import ITEM
from tests.launcher import launch

SCRIPT = Path(__file__).with_name("_slow_fake_server.py")


def wait_for_admitted(url: str, count: int, timeout_s: float) -> None:
    """Poll /metrics until ``count`` engine requests got through the work gate (generating); fail after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if f"grm_queue_wait_seconds_count {count:.1f}" in httpx.get(f"{url}/metrics", timeout=5).text:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} requests were not admitted within {timeout_s}s")


def test_sigterm_drains_in_flight_requests_and_exits_zero(tmp_path):
    with launch(command=[sys.executable, str(SCRIPT), "1.5"], log=tmp_path / "server.log", start_timeout_s=30) as srv:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [
                pool.submit(httpx.post, f"{srv.url}/v1/score", json={**ITEM, "seed": i}, timeout=30) for i in range(4)
            ]
            wait_for_admitted(srv.url, 8, timeout_s=10)  # all four accepted and generating (two orders each)
            srv.process.send_signal(signal.SIGTERM)
            results = [f.result() for f in futures]
        code = srv.process.wait(timeout=30)
    log = srv.log.read_text()
    assert [r.status_code for r in results] == [200] * 4, log
    assert all(r.json()["responses"][0]["votes"] == 4 for r in results)
    assert code == 0, log
    assert "draining" in log
