"""benchmarks/position_share.py: ties, shown-second wins and preferred wins over a samples file."""

from __future__ import annotations

import json

from benchmarks.position_share import shares


def test_shares_count_ties_and_read_scores_by_shown_position(tmp_path):
    record = {
        "responses": ["a", "b"],
        "preferred": 0,
        "samples": [
            {"permutation": [0, 1], "status": "parsed", "scores": [3, 8]},  # b shown second wins
            {"permutation": [1, 0], "status": "parsed", "scores": [8, 3]},  # a shown second wins, preferred
            {"permutation": [1, 0], "status": "parsed", "scores": [5, 5]},  # tie
            {"permutation": [0, 1], "status": "unparseable", "scores": None},
        ],
    }
    best_of_3 = {"responses": ["a", "b", "c"], "preferred": 0, "samples": [record["samples"][0]]}
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (record, best_of_3)) + "\n")
    assert shares(path) == {
        "samples": 3, "ties": 1 / 3, "decided": 2, "shown_second_wins": 1.0, "preferred_wins": 0.5,
    }  # fmt: skip


PAIR = {"id": "a", "config": {"k": 1}, "responses": ["a", "b"], "preferred": 0,
        "samples": [{"permutation": [1, 0], "status": "parsed", "scores": [8, 3]}]}  # fmt: skip


def test_a_torn_line_a_killed_run_left_is_skipped(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"id": "b", "config": {"mod\n' + json.dumps(PAIR) + "\n")  # as end_torn_line leaves it
    assert shares(path)["samples"] == 1


def test_a_cache_of_two_sampling_configs_is_refused_not_pooled(tmp_path, capsys):
    from benchmarks.position_share import main

    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(PAIR) + "\n" + json.dumps(PAIR | {"config": {"k": 2}}) + "\n")
    assert main([str(path)]) == 2
    assert "2 sampling configs" in capsys.readouterr().err
