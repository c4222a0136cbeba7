"""grm-train rft --balance-positions through the train stage and across runs: the length cut keeps every
item balanced, and a run with the other balance never reuses this one's files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from grm_train.rft import StageError, run
from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine
from tests.unit.test_rft_resume import model_dir, tiny_spec  # noqa: F401 (model_dir: the tiny-Llama fixture)
from tests.unit.test_rft_stages import HINT, ITEMS, second_shown_judge, spec, stage_counts

PAD = "x" * 8000  # a verdict far over the --max-seq-len below


def long_hinted_p0(request: GenerationRequest) -> list[str]:
    """:func:`second_shown_judge`, whose hinted verdicts on item p0 run long."""
    texts = second_shown_judge(request)
    if HINT.search(request.prompt) and "Question 0?" in request.prompt:
        return [t.replace("Analysis: Compared.", f"Analysis: {PAD}") for t in texts]
    return texts


def preferred_first(example: dict, items: dict) -> bool:
    """Whether the example's prompt shows its item's preferred response (index 0) before the other."""
    preferred, other = items[example["item_id"]].responses
    return example["prompt"].index(preferred) < example["prompt"].index(other)


def test_the_length_cut_leaves_every_balanced_item_balanced(tmp_path, model_dir):  # noqa: F811
    items = ITEMS[:3]
    spec_ = replace(tiny_spec(tmp_path, model_dir, items, cap=2), balanced=True, max_seq_len=6000)
    run(spec_, {"sample", "select", "hint", "train"}, make_engine=lambda: FakeEngine(script=long_hinted_p0))
    dataset = [json.loads(line) for line in (tmp_path / "dataset.jsonl").read_text().splitlines()]
    by_id = {i.id: i for i in items}
    for item_id in {e["item_id"] for e in dataset}:
        firsts = [preferred_first(e, by_id) for e in dataset if e["item_id"] == item_id]
        assert firsts.count(True) == firsts.count(False), item_id
    assert {e["item_id"] for e in dataset} == {"p1", "p2"}  # p0 lost its first-shown one: dropped whole
    train = stage_counts(tmp_path)["train"]
    assert (train["dropped_too_long"], train["dropped_unbalanced"], train["examples"]) == (1, 1, 4)


def balanced_run(out: Path) -> None:
    run(replace(spec(out, ITEMS[:3], cap=2), balanced=True), {"sample", "select", "hint"},
        make_engine=lambda: FakeEngine(script=second_shown_judge))  # fmt: skip


def test_a_strict_train_stage_refuses_a_balanced_selection(tmp_path):
    balanced_run(tmp_path)
    with pytest.raises(StageError, match="made with --balance-positions; run the select stage again"):
        run(spec(tmp_path, ITEMS[:3], cap=2), {"train"})


def test_a_strict_run_selecting_again_refuses_the_balanced_runs_hinted_trajectories(tmp_path):
    balanced_run(tmp_path)
    with pytest.raises(StageError, match=r"hinted\.jsonl was made from another selection"):
        run(spec(tmp_path, ITEMS[:3], cap=2), {"select", "train"})
    assert stage_counts(tmp_path)["select"]["held"] == 0  # the strict selection, not the balanced one


def test_switching_back_to_balanced_reuses_the_hint_stage_output_it_made(tmp_path):
    balanced_run(tmp_path)
    run(spec(tmp_path, ITEMS[:3], cap=2), {"select"})
    again = replace(spec(tmp_path, ITEMS[:3], cap=2), balanced=True)
    run(again, {"select"})
    from grm_train.rft import _hint_key

    assert json.loads((tmp_path / "hint.json").read_text()) == _hint_key(again)
