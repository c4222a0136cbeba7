"""grm-eval's bootstrap intervals, its cheap report re-run from a complete cache, and ``--adapter``'s cache key."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from grm_eval.bootstrap import file_intervals, paired_difference
from grm_eval.cli import main
from grm_eval.selection import select
from meta_rm.training.sampling import SamplingConfig, load_cache, to_record
from tests.conftest import shared_file

CONFIG = SamplingConfig("embedded", "deepseek-grm-default-v1", 4, 0.5, 256, True, 0)


def test_intervals_are_seeded_and_hold_the_mean():
    scores = {"a.jsonl": [[1.0], [0.0], [1.0], [0.5]] * 5, "b.jsonl": [[0.0], [1.0]] * 8}
    (by_file, macro), again = file_intervals(scores, seed=3), file_intervals(scores, seed=3)
    assert (by_file, macro) == again
    low, high = by_file["a.jsonl"][0]
    assert low < 0.625 < high and high - low < 0.5
    assert macro[0][0] < (0.625 + 0.5) / 2 < macro[0][1]


def test_a_constant_file_has_a_zero_width_interval_and_the_same_items_no_difference():
    by_file, macro = file_intervals({"f": [[1.0, 0.0]] * 7})
    assert by_file["f"] == [[1.0, 1.0], [0.0, 0.0]] and macro == by_file["f"]
    same = {"f": [[1.0], [0.0], [0.5]]}
    assert paired_difference(same, same)[1] == [[0.0, 0.0]]
    with pytest.raises(ValueError):
        paired_difference(same, {"f": [[1.0]]})


def complete_cache(tmp_path, limit: int = 4):
    """A samples cache holding every drawn smoke item, as grm-eval's in-process run writes it."""
    smoke = shared_file("data", "smoke.jsonl")
    items = [item for _, item in select([smoke], limit, 0, set())]
    out = tmp_path / "run"
    out.mkdir()
    samples = [
        {"permutation": [0, 1], "text": "t", "status": "parsed", "scores": [8, 3], "generation_tokens": 10},
        {"permutation": [1, 0], "text": "t", "status": "parsed", "scores": [4, 6], "generation_tokens": 10},
    ] * 2
    with (out / "samples.jsonl").open("w") as f:
        for item in items:
            f.write(json.dumps(to_record(item, CONFIG, samples)) + "\n")
    return smoke, out


def test_a_complete_cache_rewrites_the_report_with_intervals_and_starts_no_engine(tmp_path, monkeypatch):
    import server.engines

    monkeypatch.setattr(server.engines, "create_engine", lambda *a, **k: pytest.fail("an engine was started"))
    smoke, out = complete_cache(tmp_path)
    args = ["--data", str(smoke), "--out", str(out), "--k", "1,2,4", "--limit", "4", "--meta-rm", "none", "--resume"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    f = report["by_file"]["smoke.jsonl"]
    assert f["items"] == 4 and set(f["voting_ci"]) == {"1", "2", "4"} and f["parse_rate"] == 1.0
    assert f["voting"]["4"] == 1.0 and f["voting_ci"]["4"] == [1.0, 1.0]  # 8+4 against 3+6: always right
    assert report["macro_files"]["voting_ci"]["4"] == [1.0, 1.0] and report["bootstrap"]["resamples"] == 2000
    assert len(report["items"]) == 4
    assert "| smoke.jsonl | 4 | 100.0 [100.0, 100.0] |" in (out / "report.md").read_text()


def test_a_cache_written_before_the_adapter_field_is_still_read(tmp_path):
    old_line = {"id": "x", "config": asdict(CONFIG) | {}, "samples": []}
    del old_line["config"]["adapter"]  # what a61016d's SamplingConfig wrote
    cache = tmp_path / "samples.jsonl"
    cache.write_text(json.dumps(old_line) + "\n")
    assert list(load_cache(cache, CONFIG)) == ["x"]
    assert load_cache(cache, SamplingConfig(**{**asdict(CONFIG), "adapter": "ab12"})) == {}


def test_adapter_is_for_in_process_runs_and_must_be_an_adapter(tmp_path, capsys):
    smoke = str(shared_file("data", "smoke.jsonl"))
    base = ["--data", smoke, "--out", str(tmp_path / "o")]
    assert main([*base, "--adapter", str(tmp_path), "--url", "http://127.0.0.1:9"]) == 2
    assert "grm-serve --adapter" in capsys.readouterr().err
    assert main([*base, "--adapter", str(tmp_path)]) == 2
    assert "not a peft adapter folder" in capsys.readouterr().err


def test_two_reports_on_the_same_items_compare_side_by_side_with_a_paired_interval(tmp_path, capsys):
    from grm_eval.compare import compare
    from grm_eval.compare import main as compare_main

    smoke, out = complete_cache(tmp_path)
    assert (
        main(["--data", str(smoke), "--out", str(out), "--k", "1,4", "--limit", "4", "--meta-rm", "none", "--resume"])
        == 0
    )
    before = json.loads((out / "report.json").read_text())
    after = json.loads(json.dumps(before))
    first = after["items"][0]
    first["voting"]["4"] = 0.0  # one item of four lost at k=4
    after["by_file"]["smoke.jsonl"]["voting"]["4"] = after["macro_files"]["voting"]["4"] = 0.75
    table = compare(before, after)
    assert "| smoke.jsonl | before | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] | 100.0 |" in table
    assert "| after - before (paired) | +0.0 [0.0, 0.0] | -25.0 [-75.0, 0.0] |" in table
    other = json.loads(json.dumps(before))
    other["items"][0]["id"] = "elsewhere"
    with pytest.raises(ValueError, match="different items"):
        compare(before, other)
    assert compare_main([str(out), str(out)]) == 0 and "**macro over files**" in capsys.readouterr().out
