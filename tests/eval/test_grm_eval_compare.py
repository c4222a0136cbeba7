"""``python -m grm_eval.compare``: items paired by id whatever their order, and reports that cannot be compared
(other k, other data) refused with one line naming why."""

from __future__ import annotations

import json
import random

import pytest

from grm_eval.cli import main
from grm_eval.compare import compare
from grm_eval.compare import main as compare_main
from tests.eval.test_grm_eval_intervals import complete_cache


@pytest.fixture
def report(tmp_path):
    smoke, out = complete_cache(tmp_path)
    args = ["--data", str(smoke), "--out", str(out), "--k", "1,4", "--limit", "4", "--meta-rm", "none", "--resume"]
    assert main(args) == 0
    return json.loads((out / "report.json").read_text())


def test_items_are_paired_by_id_not_by_their_order_in_the_report(report):
    after = json.loads(json.dumps(report))
    after["items"][0]["voting"]["4"] = 0.0
    shuffled = json.loads(json.dumps(after))
    random.Random(1).shuffle(shuffled["items"])
    assert shuffled["items"] != after["items"]
    assert compare(report, shuffled) == compare(report, after)


def test_reports_with_other_k_are_refused_with_one_line(report, tmp_path, capsys):
    after = json.loads(json.dumps(report))
    after["config"]["k"] = [1, 2]
    for item in after["items"]:
        item["voting"] = {"1": item["voting"]["1"], "2": item["voting"]["1"]}
    (tmp_path / "a.json").write_text(json.dumps(report))
    (tmp_path / "b.json").write_text(json.dumps(after))
    assert compare_main([str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert err == "grm_eval.compare: AFTER has no Voting@4 (its k: 1, 2); run both with the same --k\n"


def test_reports_on_other_contents_of_the_same_data_file_are_refused(report):
    after = json.loads(json.dumps(report))
    after["data_files"] = {name: "0" * 64 for name in after["data_files"]}  # a label fixed since, say
    with pytest.raises(ValueError, match=r"different data: smoke\.jsonl differs"):
        compare(report, after)
