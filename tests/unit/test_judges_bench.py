"""benchmarks/judges.py and judges_grpo.py end to end, small: every judge profile on fake-engine servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from server.pipeline.judges import JUDGES, get_judge

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
# A generous window: the two /v1/reward calls of a pair (and a GRPO group's 8 one-row calls) must meet
# however loaded the test machine is; the benchmarks themselves run with the server's default.
FAKE = "--engine fake --group-window-s 0.5"


def run(script: str, *args: str, out: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--server-args", FAKE, *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_every_profile_parses_every_sample_and_answers_on_every_route(tmp_path: Path) -> None:
    out = tmp_path / "judges.json"
    stdout = run("judges.py", "--pairs-per-file", "1", "--route-pairs", "1", out=out)
    rows = {r["profile"]: r for r in json.loads(out.read_text())}
    assert list(rows) == list(JUDGES)
    for name, r in rows.items():
        assert r["pairs"] == 4  # one pair of each dev file
        # 4 /v1/score items, then one pair through /get_reward, /v1/reward and /v1/rerank (render draws
        # nothing); k=2: two samples a pair (both orders, or a group's two rotations), a single-response
        # judge two for each response.
        per_pair = 4 if get_judge(name).mode == "single" else 2
        assert (r["samples"], r["parsed"], r["engine_requests"]) == (7 * per_pair, 7 * per_pair, 14), name
        assert r["routes"] == {
            "/v1/score": [4, 4],
            "/get_reward": [1, 1],
            "/v1/reward": [1, 1],
            "/v1/rerank": [1, 1],
            "/v1/render": [1, 1],
        }, name
        assert r["failures"] == [] and r["unparseable_texts"] == []
    assert "| skywork-critic | pairwise | 4 | 14 | 14 | 100.0% | 0 |" in stdout


def test_a_grpo_group_costs_what_each_mode_plans_whether_it_comes_as_calls_or_one_item(tmp_path: Path) -> None:
    out = tmp_path / "grpo.json"
    profiles = "deepseek-grm,skywork-critic,prometheus-2-absolute"  # one of each mode
    stdout = run("judges_grpo.py", "--profiles", profiles, "--prompts", "1", out=out)
    rows = {r["profile"]: r for r in json.loads(out.read_text())}
    # k=4, pools of 4: a group judge's 2 groups x 4 rotations, a pairwise judge's 2 pools x 4 pairs x 2
    # orders, a single-response judge's 8 responses alone.
    assert {name: r["planned"] for name, r in rows.items()} == {
        "deepseek-grm": 8,
        "skywork-critic": 16,
        "prometheus-2-absolute": 8,
    }
    samples = {"deepseek-grm": 2 * 4, "skywork-critic": 8 * 4, "prometheus-2-absolute": 8 * 4}  # k per judged set
    for name, r in rows.items():
        for way in ("calls", "item"):
            x = r[way]
            assert x["rewards"] == 8 and x["unscored"] == 0, (name, way)
            assert x["engine_requests"] == r["planned"] and x["requests_per_reward"] == r["planned"] / 8, (name, way)
            assert x["parsed"] == x["samples"] == samples[name], (name, way)
        one_at_a_time = get_judge(name).mode == "single"
        assert r["calls"]["mean_group_size"] == (1 if one_at_a_time else 4), name
    assert "| skywork-critic | pairwise | 16 | 2.00 |" in stdout


def test_grpo_groups_hold_eight_distinct_rollouts_of_one_single_turn_question() -> None:
    sys.path.insert(0, str(BENCH))
    from judges_grpo import groups

    batch = groups(4, 600)
    assert len({g["id"] for g in batch}) == 4
    for g in batch:
        assert len(g["rollouts"]) == len(set(g["rollouts"])) == 8
        chosen, rejected = g["rollouts"][:2]
        assert all(r and (chosen.startswith(r) or rejected.startswith(r)) for r in g["rollouts"][2:])
