"""grm-train rft resumes only from what the current run would have written: a torn cache line loses no
record, and a stage's output made from other samples (another config or item set) is refused, not reused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from grm_train.rft import RunSpec, StageError, run
from grm_train.train import CheckpointMismatchError, TrainOptions, train_lora
from meta_rm.training.sampling import SamplingConfig
from server.engines.fake import FakeEngine
from server.pipeline.prompts import DEFAULT_TEMPLATE
from tests.tiny_models import byte_chatml_tokenizer, tiny_llama
from tests.unit.test_rft_stages import ITEMS, spec, stage_counts, weak_judge


def test_a_record_appended_after_a_torn_line_is_kept(tmp_path):
    (tmp_path / "samples.jsonl").write_text('{"id": "p9", "config": {"mod')  # a run killed mid-write
    run(spec(tmp_path, ITEMS), {"sample", "select"}, make_engine=lambda: FakeEngine(script=weak_judge))
    assert stage_counts(tmp_path)["select"]["items"] == len(ITEMS)


def test_the_hint_stage_refuses_a_selection_made_with_another_k(tmp_path):
    run(spec(tmp_path, ITEMS, k=2), {"sample", "select"}, make_engine=lambda: FakeEngine(script=weak_judge))
    with pytest.raises(StageError, match=r"selection\.json was made from other samples"):
        run(spec(tmp_path, ITEMS, k=4), {"sample", "hint"}, make_engine=lambda: FakeEngine(script=weak_judge))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(byte_chatml_tokenizer(tmp_path_factory.mktemp("tok")))
    return tiny_llama(tmp_path_factory.mktemp("tiny"), LlamaForCausalLM, tokenizer, max_position_embeddings=8192)


def fake() -> FakeEngine:
    return FakeEngine(script=weak_judge)


def tiny_spec(out, model_dir, items, cap=1) -> RunSpec:
    config = SamplingConfig(str(model_dir), DEFAULT_TEMPLATE, 2, 0.5, 64, True, 0)
    train = TrainOptions(max_steps=1, grad_accum=1, lora_r=2)
    return RunSpec(out, items, config, hint_k=2, max_hinted_per_item=cap, max_seq_len=8192, train=train)


def test_training_refuses_a_selection_of_fewer_items_than_were_sampled(tmp_path, model_dir):
    run(tiny_spec(tmp_path, model_dir, ITEMS[:3]), {"sample", "select", "hint"}, make_engine=fake)
    more = tiny_spec(tmp_path, model_dir, ITEMS)  # --limit raised, the select stage not run again
    with pytest.raises(StageError, match=r"selection\.json was made from other samples"):
        run(more, {"sample", "train"}, make_engine=fake)
    assert not (tmp_path / "adapter").exists()


def test_training_refuses_hinted_trajectories_kept_under_another_cap(tmp_path, model_dir):
    run(tiny_spec(tmp_path, model_dir, ITEMS), {"sample", "select", "hint"}, make_engine=fake)
    with pytest.raises(StageError, match="run the hint stage again"):
        run(tiny_spec(tmp_path, model_dir, ITEMS, cap=2), {"train"})
    assert not (tmp_path / "adapter").exists()


def test_training_does_not_resume_checkpoints_of_other_examples(tmp_path, model_dir):
    from transformers import AutoTokenizer

    from grm_train.dataset import build_examples
    from grm_train.selection import Trajectory
    from server.pipeline.judges.deepseek import DeepSeekGRM

    record = {"id": "r", "messages": [{"role": "user", "content": "Q?"}], "responses": ["a", "b"], "preferred": 0}
    tok = AutoTokenizer.from_pretrained(model_dir)

    def examples(text: str) -> list:
        return build_examples(tok, DeepSeekGRM(), {"r": record}, [Trajectory("r", (0, 1), text, (9, 2))])

    opts = TrainOptions(max_steps=1, grad_accum=1, save_steps=1, lora_r=2)
    train_lora(model_dir, examples("Scores: \\boxed{9, 2}"), tmp_path, opts)
    with pytest.raises(CheckpointMismatchError, match="holds a run on other examples or options"):
        train_lora(model_dir, examples("Other: \\boxed{8, 1}"), tmp_path, replace(opts, max_steps=2))
    again = train_lora(model_dir, examples("Scores: \\boxed{9, 2}"), tmp_path, replace(opts, max_steps=2))
    assert again["resumed_from"] == "checkpoint-1"  # the same examples still resume


def test_a_whole_run_then_the_same_command_again_trains_once(tmp_path, model_dir, capsys):
    every = {"sample", "select", "hint", "train"}
    run(tiny_spec(tmp_path, model_dir, ITEMS), every, make_engine=fake)
    assert (tmp_path / "adapter" / "grm_train.json").exists() and (tmp_path / "hint.json").exists()
    run(tiny_spec(tmp_path, model_dir, ITEMS), every, make_engine=lambda: pytest.fail("the caches hold every item"))
    assert "exists (delete it to train again)" in capsys.readouterr().out
