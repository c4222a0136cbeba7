"""grm-eval in-process on the real engine and the embedded GRM + meta RM: two smoke pairs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import shared_file

pytestmark = pytest.mark.e2e


def test_grm_eval_writes_a_consistent_report_with_the_embedded_default(tmp_path):
    out = tmp_path / "report"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "grm_eval.cli",
            "--data",
            str(shared_file("data", "smoke.jsonl")),
            "--out",
            str(out),
            "--k",
            "1,2,4",
            "--limit",
            "2",
            "--max-tokens",
            "96",
            "--greedy",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    o = report["overall"]
    assert o["items"] == 2 and report["config"]["model"] == "embedded" and report["config"]["meta_rm"]
    for k in ("1", "2", "4"):
        assert 0.0 <= o["voting"][k] <= 1.0 and 0.0 <= o["meta_rm"][k] <= 1.0
        assert o["voting"][k] * 4 == int(o["voting"][k] * 4)  # 2 pairs, ties half: multiples of 1/4
    assert o["parse_rate"] >= 0.75 and o["mean_generation_tokens"] > 0 and o["greedy"] is not None
    assert (out / "accuracy_vs_k.png").stat().st_size > 1000
    markdown = (out / "report.md").read_text()
    assert f"| **all items** | 2 | {100 * o['voting']['1']:.1f} |" in markdown
    assert "grm-eval report" in run.stdout
