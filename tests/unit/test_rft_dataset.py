"""grm-train's training examples and its train stage, on a byte-level tokenizer and a tiny Llama (no download).

The prompt is the plain (un-hinted) GRM prompt as the engine renders and tokenizes it, the completion the
trajectory and EOS, and TRL 1.16 puts the loss on the completion tokens only.
"""

from __future__ import annotations

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from grm_train.dataset import build_examples, judge_request, within
from grm_train.selection import Trajectory
from grm_train.train import TrainOptions, last_checkpoint, train_lora
from server.engines.chat_encoding import encode_chat, render_chat
from server.pipeline.judges.deepseek import DeepSeekGRM
from tests.tiny_models import byte_chatml_tokenizer, tiny_llama

RECORD = {
    "id": "r1",
    "messages": [{"role": "user", "content": "Name a prime."}],
    "responses": ["7 is prime.", "9 is prime."],
    "preferred": 0,
}
OUTPUT = "Specific Criteria: Correctness.\nAnalysis: 9 = 3 x 3.\nScores: \\boxed{2, 9}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok_dir = byte_chatml_tokenizer(tmp_path_factory.mktemp("tok"))
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    folder = tmp_path_factory.mktemp("tiny")
    return tiny_llama(folder, LlamaForCausalLM, tokenizer, max_position_embeddings=8192)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def examples(tokenizer, *trajectories):
    return build_examples(tokenizer, DeepSeekGRM(), {"r1": RECORD}, trajectories)


def test_the_prompt_is_the_engines_rendering_of_the_order_the_trajectory_saw(tokenizer):
    (ex,) = examples(tokenizer, Trajectory("r1", (1, 0), OUTPUT, (2, 9)))
    request = judge_request(DeepSeekGRM(), RECORD, (1, 0))
    assert ex.prompt == render_chat(tokenizer, request) and ex.prompt_ids == encode_chat(tokenizer, request)
    assert ex.prompt.index("9 is prime.") < ex.prompt.index("7 is prime.")  # shown second response first
    assert ex.prompt.endswith("<|im_start|>assistant\n")


def test_a_hinted_trajectory_is_trained_on_the_prompt_without_the_hint(tokenizer):
    hinted, plain = examples(
        tokenizer, Trajectory("r1", (0, 1), OUTPUT, (9, 2), hinted=True), Trajectory("r1", (0, 1), OUTPUT, (9, 2))
    )
    assert "Hint" not in hinted.prompt and hinted.prompt_ids == plain.prompt_ids and hinted.hinted


def test_the_completion_is_the_trajectory_then_eos(tokenizer):
    (ex,) = examples(tokenizer, Trajectory("r1", (0, 1), OUTPUT, (9, 2)))
    assert ex.completion == OUTPUT
    assert ex.completion_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ex.completion_ids[:-1]) == OUTPUT
    features = ex.features()
    assert features["completion_mask"] == [0] * len(ex.prompt_ids) + [1] * len(ex.completion_ids)


def test_examples_over_the_length_limit_are_dropped_and_counted(tokenizer):
    exs = examples(
        tokenizer, Trajectory("r1", (0, 1), OUTPUT, (9, 2)), Trajectory("r1", (0, 1), OUTPUT + "!" * 50, (9, 2))
    )
    fit = within(exs, exs[0].length)
    kept, dropped = [exs[i] for i in fit], len(exs) - len(fit)
    assert kept == exs[:1] and dropped == 1


def test_trl_puts_the_loss_on_the_completion_only(model_dir, tokenizer, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    (ex,) = examples(tokenizer, Trajectory("r1", (0, 1), OUTPUT, (9, 2)))
    config = SFTConfig(output_dir=str(tmp_path), max_length=None, completion_only_loss=True, use_cpu=True, report_to=[])
    trainer = SFTTrainer(
        model=str(model_dir), args=config, train_dataset=Dataset.from_list([ex.features()]),
        processing_class=tokenizer, peft_config=LoraConfig(r=2, target_modules="all-linear"),
    )  # fmt: skip
    labels = trainer.train_dataset[0]["labels"]
    assert labels == [-100] * len(ex.prompt_ids) + ex.completion_ids


def test_training_saves_an_adapter_and_a_rerun_resumes_from_the_last_checkpoint(model_dir, tokenizer, tmp_path):
    exs = examples(tokenizer, Trajectory("r1", (0, 1), OUTPUT, (9, 2)), Trajectory("r1", (1, 0), OUTPUT, (2, 9)))
    first = train_lora(model_dir, exs, tmp_path, TrainOptions(max_steps=2, grad_accum=1, save_steps=2, lora_r=2))
    assert first["optimizer_steps"] == 2 and first["resumed_from"] is None
    assert (tmp_path / "adapter" / "adapter_config.json").exists() and last_checkpoint(tmp_path).endswith(
        "checkpoint-2"
    )
    again = train_lora(model_dir, exs, tmp_path, TrainOptions(max_steps=3, grad_accum=1, save_steps=2, lora_r=2))
    assert again["resumed_from"] == "checkpoint-2" and again["optimizer_steps"] == 3


def test_no_examples_is_an_error(model_dir, tmp_path):
    with pytest.raises(ValueError, match="no training examples"):
        train_lora(model_dir, [], tmp_path, TrainOptions())
