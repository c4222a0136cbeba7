"""benchmarks/chaos_soak.py, CI-sized: a few hundred calls, a third abandoned, then the books balance."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_small_chaos_soak_leaves_the_gate_idle_and_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    args = ["--calls", "400", "--fresh-calls", "5", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "chaos_soak.py"), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "checks: all passed" in proc.stdout
    assert re.search(r"gate after: in flight 0, queued 0, waiting requests 0, tenants holding \{\}", proc.stdout)
    figures = json.loads(out.read_text())
    assert sum(figures["outcomes"].values()) == 400 and "500" not in figures["outcomes"]
    assert figures["outcomes"].get("499", 0) > 0  # clients did hang up mid-call
    abandoned = figures["fates"]["hangs up"] + figures["fates"]["short deadline"]
    assert 0.25 < abandoned / 400 < 0.42  # about a third
    assert set(figures["kinds"]) == {"plain", "plain grouped", "adaptive", "adaptive grouped"}
    assert figures["peak_queued"] > 0  # requests did wait at the gate
    assert figures["left_after"] == {
        "dedup_jobs": 0,
        "grouping_batches": 0,
        "admitted_calls": 0,
        "admission_books": 0,
        "engine_running": 0,
    }
    assert figures["tasks_left"] == [] and figures["errors_logged"] == 0
    assert figures["fresh_after"] == {"200": 5}
