"""grm-train rft's sample, select and hint stages on a scripted fake engine: caches, counts, resumption.

The script judges like a weak GRM: without a hint it prefers the longer response (so items whose
preferred response is the longer one are always right, too easy, and the others never right); with a
hint it scores the hinted response 9 and the others 2 (so hinted sampling solves every item).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from grm_train.rft import RunSpec, StageError, run
from grm_train.train import TrainOptions
from meta_rm.training.data import PreferenceItem
from meta_rm.training.sampling import SamplingConfig
from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from server.pipeline.domain import Message

HINT = re.compile(r"#### Hint ####\nResponse (\d+) is the best")


def weak_judge(request: GenerationRequest) -> list[str]:
    shown = shown_responses(request.prompt)
    hint = HINT.search(request.prompt)
    if hint:
        scores = [9 if i + 1 == int(hint.group(1)) else 2 for i in range(len(shown))]
    else:
        scores = [min(10, max(1, len(r) // 4)) for r in shown]
    box = ", ".join(map(str, scores))
    return [f"Specific Criteria: Length.\nAnalysis: Compared.\nScores: \\boxed{{{box}}}"] * request.n


def pair(i: int, preferred_longer: bool) -> PreferenceItem:
    long, short = f"A long and careful answer number {i}.", "Short."
    responses = (long, short) if preferred_longer else (short, long)
    return PreferenceItem(f"p{i}", "test", "s", (Message("user", f"Question {i}?"),), responses, 0)


def spec(out: Path, items: list[PreferenceItem], k: int = 2, cap: int = 1) -> RunSpec:
    config = SamplingConfig("fake", "deepseek-grm-default-v1", k, 0.5, 64, True, 0)
    return RunSpec(out, items, config, hint_k=k, max_hinted_per_item=cap, max_seq_len=4096, train=TrainOptions())


ITEMS = [pair(0, True), pair(1, False), pair(2, True), pair(3, False), pair(4, False)]


def stage_counts(out: Path) -> dict[str, dict]:
    return {r["stage"]: r["counts"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())}


def test_the_stages_count_every_trajectory_and_item_once(tmp_path):
    engine = FakeEngine(script=weak_judge)
    run(spec(tmp_path, ITEMS), {"sample", "select", "hint"}, make_engine=lambda: engine)
    counts = stage_counts(tmp_path)
    sel, hint = counts["select"], counts["hint"]
    assert counts["sample"]["sampled_now"] == 5 and counts["sample"]["samples"] == 10
    assert sel["accepted"] + sel["wrong"] + sel["too_easy_trajectories"] == 2 * 5
    assert sel["too_easy_items"] + sel["hint_needed_items"] + sel["kept_items"] == 5
    assert (sel["too_easy_items"], sel["hint_needed_items"], sel["accepted"]) == (2, 3, 0)
    assert (hint["hinted_items"], hint["hinted_correct"], hint["hinted_kept"]) == (3, 6, 3)
    hinted = [json.loads(line) for line in (tmp_path / "hinted.jsonl").read_text().splitlines()]
    assert sorted(h["item_id"] for h in hinted) == ["p1", "p3", "p4"] and all(h["hinted"] for h in hinted)


def test_a_rerun_resumes_from_the_caches_without_the_engine(tmp_path):
    run(spec(tmp_path, ITEMS), {"sample", "select", "hint"}, make_engine=lambda: FakeEngine(script=weak_judge))

    def no_engine() -> FakeEngine:
        raise AssertionError("the caches hold every item: no engine is needed")

    run(spec(tmp_path, ITEMS), {"sample", "select", "hint"}, make_engine=no_engine)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    again = [r["counts"] for r in records if r["stage"] == "sample"][-1]
    assert again["sampled_now"] == 0 and again["from_cache"] == 5


def test_the_hinted_prompt_reaches_the_engine_and_the_plain_one_does_not_hint(tmp_path):
    engine = FakeEngine(script=weak_judge)
    run(spec(tmp_path, ITEMS), {"sample", "select", "hint"}, make_engine=lambda: engine)
    prompts = [r.prompt for r in engine.requests]
    hinted = [p for p in prompts if "#### Hint ####" in p]
    assert len(hinted) == 3 * 2 and len(prompts) - len(hinted) == 5 * 2  # one request per order, k=2 orders


def test_select_without_samples_says_which_stage_to_run(tmp_path):
    with pytest.raises(StageError, match="run the sample stage"):
        run(spec(tmp_path, ITEMS), {"select"})


def test_stages_and_the_item_length_cut_are_read_from_the_command_line(tmp_path):
    from grm_eval.selection import item_chars
    from grm_train.cli import build_parser, spec_of
    from tests.conftest import shared_file

    data = str(shared_file("data", "smoke.jsonl"))
    args = build_parser().parse_args(["rft", "--data", data, "--out", str(tmp_path), "--stages", "select,hint"])
    assert args.stages == {"select", "hint"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rft", "--data", data, "--out", str(tmp_path), "--stages", "sample,eval"])
    every = spec_of(build_parser().parse_args(["rft", "--data", data, "--out", str(tmp_path)]))
    short = spec_of(
        build_parser().parse_args(["rft", "--data", data, "--out", str(tmp_path), "--max-item-chars", "1500"])
    )
    assert short.items and all(item_chars(i) <= 1500 for i in short.items)
    assert {i.id for i in short.items} == {i.id for i in every.items if item_chars(i) <= 1500}


def second_shown_judge(request: GenerationRequest) -> list[str]:
    """A position-biased judge: without a hint the response shown second wins; with one, the hinted one."""
    shown = shown_responses(request.prompt)
    hint = HINT.search(request.prompt)
    best = int(hint.group(1)) - 1 if hint else len(shown) - 1
    box = ", ".join("9" if i == best else "2" for i in range(len(shown)))
    return [f"Specific Criteria: Order.\nAnalysis: Compared.\nScores: \\boxed{{{box}}}"] * request.n


def test_balanced_positions_trains_on_no_position_prior_and_hints_the_missing_position(tmp_path):
    items = ITEMS[:3]
    run(replace(spec(tmp_path, items, cap=2), balanced=True), {"sample", "select", "hint"},
        make_engine=lambda: FakeEngine(script=second_shown_judge))  # fmt: skip
    sel, hint = stage_counts(tmp_path)["select"], stage_counts(tmp_path)["hint"]
    assert (sel["accepted"], sel["held"], sel["hint_needed_items"]) == (0, 3, 3)  # right only when shown second
    assert (hint["hinted_kept"], hint["plain_kept"], hint["hinted_unsolved_items"]) == (3, 3, 0)
    kept = [json.loads(line) for line in (tmp_path / "hinted.jsonl").read_text().splitlines()]
    firsts = [t["permutation"].index(0) == 0 for t in kept]  # each item's preferred response is index 0
    assert firsts.count(True) == firsts.count(False) == 3
    assert all(t["hinted"] == first for t, first in zip(kept, firsts, strict=True))  # only the hints show it first


def test_a_hint_stage_run_with_another_balance_than_the_selection_says_to_select_again(tmp_path):
    engine = FakeEngine(script=second_shown_judge)
    run(spec(tmp_path, ITEMS[:2]), {"sample", "select"}, make_engine=lambda: engine)
    with pytest.raises(StageError, match="run the select stage"):
        run(replace(spec(tmp_path, ITEMS[:2]), balanced=True), {"hint"}, make_engine=lambda: engine)
