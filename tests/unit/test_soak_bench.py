"""benchmarks/soak.py end to end, small: a real ``grm-serve --engine fake``, 200 calls, its summary."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_small_soak_runs_and_prints_its_summary(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    args = ["--calls", "200", "--concurrency", "4", "--distinct", "--single-calls", "5", "--sample-every", "0.1"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "soak.py"), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert "calls ok 200, failed 0" in text
    assert re.search(r"; \d+(\.\d+)? calls/s", text)
    assert re.search(r"single call \(one at a time\): p50 \d+\.\d+ ms", text)
    assert re.search(
        r"RSS \(server process tree\): start \d+\.\d MiB, after warm-up \(20 calls\) \d+\.\d MiB, "
        r"peak \d+\.\d MiB, end \d+\.\d MiB",
        text,
    )
    assert re.search(r"growth warm-up to end: [+-]\d+\.\d+ MiB, [+-]\d+\.\d KiB per 1,000 calls", text)
    figures = json.loads(out.read_text())
    assert figures["outcomes"] == {"ok": 200}
    # Every call is distinct, so each of the 200 + 5 + 1 (untimed) reaches the engine at least once.
    assert figures["engine_requests_total"] >= 206
    assert figures["rss_start_bytes"] > 0 and figures["rss_peak_bytes"] >= figures["rss_end_bytes"] > 0
    assert figures["samples"] and figures["samples"][-1]["calls_done"] == 200
