"""benchmarks/burst.py end to end, small: each trainer's client code against a real fake-engine server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_small_burst_loses_no_reward_with_any_client(tmp_path: Path) -> None:
    out = tmp_path / "burst.json"
    args = ["--rollouts", "32", "--latency", "0.5", "--max-num-seqs", "16", "--k", "2", "--probe-at", "0.2"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "burst.py"), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcomes = {o["client"]: o for o in json.loads(out.read_text())}
    assert set(outcomes) == {"openrlhf", "slime", "grm-client"}
    for o in outcomes.values():
        assert o["lost"] == 0 and o["rollouts"] == 32
        assert o["probe_s"] is not None  # the second tenant's call was answered
        assert o["bound_s"] == 32 / 8 * 2 * 2 * 0.5 / 16  # 4 prompts x k=2 x 2 groups of 4, 16 per 0.5 s
        assert o["mean_group_size"] > 1  # one-row calls of a prompt shared GRM prompts
    assert "| openrlhf | 0 of 32 |" in proc.stdout
