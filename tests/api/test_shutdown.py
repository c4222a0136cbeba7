"""SIGTERM with requests in flight: they all complete, new work is refused, the process exits 0."""

import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from server.launcher import launch
from tests.api.conftest import ITEM

SCRIPT = Path(__file__).with_name("_slow_fake_server.py")


def test_sigterm_drains_in_flight_requests_and_exits_zero(tmp_path):
    with launch(command=[sys.executable, str(SCRIPT), "1.5"], log=tmp_path / "server.log", start_timeout_s=30) as srv:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(httpx.post, f"{srv.url}/v1/score", json=ITEM, timeout=30) for _ in range(4)]
            time.sleep(0.5)  # all four accepted and generating
            srv.process.send_signal(signal.SIGTERM)
            results = [f.result() for f in futures]
        code = srv.process.wait(timeout=30)
    log = srv.log.read_text()
    assert [r.status_code for r in results] == [200] * 4, log
    assert all(r.json()["responses"][0]["votes"] == 4 for r in results)
    assert code == 0, log
    assert "draining" in log
