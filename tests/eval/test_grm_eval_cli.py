"""grm-eval end to end against a server process on the fake engine (fast): files, numbers, resume."""

import json
import sys
from pathlib import Path

import pytest

from grm_eval.cli import main
from grm_eval.metrics import voting_accuracy
from grm_eval.report import votes_of
from tests.conftest import shared_file
from tests.launcher import launch

SERVER = Path(__file__).parents[1] / "api" / "_slow_fake_server.py"


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("fake") / "server.log"
    with launch(command=[sys.executable, str(SERVER), "0"], log=log, start_timeout_s=30) as srv:
        yield srv.url


def run_eval(url, out, *extra):
    smoke = str(shared_file("data", "smoke.jsonl"))
    return main(["--data", smoke, "--url", url, "--out", str(out), "--k", "1,2,4", "--limit", "5", "--greedy", *extra])


def test_report_files_hold_the_same_consistent_numbers(fake_server, tmp_path, capsys):
    assert run_eval(fake_server, tmp_path) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    markdown = (tmp_path / "report.md").read_text()
    assert (tmp_path / "accuracy_vs_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    o = report["overall"]
    assert o["items"] == 5 and o["parse_rate"] == 1.0 and report["config"]["k"] == [1, 2, 4]
    assert list(report["data_files"]) == ["smoke.jsonl"] and len(report["data_files"]["smoke.jsonl"]) == 64
    # Recompute Voting@4 from the cached samples: the report agrees.
    records = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    again = sum(voting_accuracy(votes_of(r), 2, r["preferred"], 4) for r in records) / len(records)
    assert o["voting"]["4"] == pytest.approx(again, abs=1e-4)
    assert f"{100 * o['voting']['4']:.1f}" in markdown and "Voting@4" in markdown
    assert sum(e["items"] for e in report["by_subset"]) == 5
    assert 0 <= o["greedy"] <= 1 and o["flip_rate_greedy"] is not None
    assert "grm-eval report" in capsys.readouterr().out
    # The report and the plot name the model the server runs, not its URL.
    assert report["config"]["model"] == "fake-grm" and report["config"]["url"] == fake_server
    assert "fake-grm" in markdown and fake_server not in markdown


def test_httpx_request_lines_stay_out_of_the_progress_output(fake_server, tmp_path, caplog):
    with caplog.at_level("INFO"):
        assert run_eval(fake_server, tmp_path) == 0
    assert not [r for r in caplog.records if r.name.startswith("httpx")]


def test_an_existing_run_needs_resume_and_resuming_samples_nothing_new(fake_server, tmp_path, capsys):
    assert run_eval(fake_server, tmp_path) == 0
    before = (tmp_path / "samples.jsonl").read_text()
    assert run_eval(fake_server, tmp_path) == 2
    assert "--resume" in capsys.readouterr().err
    assert run_eval(fake_server, tmp_path, "--resume") == 0
    assert (tmp_path / "samples.jsonl").read_text() == before


def test_bad_k_and_bad_data_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--data", "x.jsonl", "--out", str(tmp_path), "--k", "two"])
    assert "comma-separated integers" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q"}\n')
    assert main(["--data", str(bad), "--out", str(tmp_path / "o"), "--url", "http://127.0.0.1:9"]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_a_report_rerun_from_a_complete_cache_needs_no_server(tmp_path):
    with launch(command=[sys.executable, str(SERVER), "0"], log=tmp_path / "server.log", start_timeout_s=30) as srv:
        url = srv.url
        assert run_eval(url, tmp_path) == 0
    before = json.loads((tmp_path / "report.json").read_text())
    assert run_eval(url, tmp_path, "--resume") == 0  # the server is gone: the cache holds every item
    after = json.loads((tmp_path / "report.json").read_text())
    assert after["config"]["model"] == "fake-grm" and after["overall"] == before["overall"]
