"""The train stage of ``grm-train rft``: LoRA (peft) with TRL's SFTTrainer on the accepted trajectories.

The examples come tokenized (:mod:`grm_train.dataset`: the engine's exact prompt ids, then the
trajectory and EOS) with a ``completion_mask``; ``completion_only_loss=True`` makes TRL 1.16 build the
labels from it (``-100`` on every prompt token), so the loss is on the judge's output only. Checkpoints
go to ``DIR/checkpoints`` every ``save_steps`` optimizer steps, and a rerun resumes from the last one,
only if it trains the same examples with the same options (``run-key.json`` there; the step count,
``--epochs`` and ``--save-steps`` may change).
float32 on CPU; bfloat16 where CUDA supports it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from grm_train.dataset import Example

ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
RUN_FILE = "grm_train.json"  # the run's config and counts, beside the adapter's own files
RUN_KEY = "run-key.json"  # in CHECKPOINTS_DIR: what the checkpoints were trained on


class CheckpointMismatchError(ValueError):
    """The checkpoints in ``DIR/checkpoints`` were trained on other examples or options."""


@dataclass(frozen=True)
class TrainOptions:
    """The train stage's choices (``grm-train rft`` flags)."""

    epochs: float = 1.0
    lr: float = 2e-4
    lora_r: int = 16
    lora_alpha: int | None = None  # default 2 * lora_r
    max_steps: int | None = None  # overrides epochs when set
    grad_accum: int = 4
    save_steps: int = 10
    seed: int = 0


def last_checkpoint(out: Path) -> str | None:
    """The newest ``checkpoint-N`` folder of a previous run in ``out``, or None."""
    folder = out / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    found: str | None = get_last_checkpoint(str(folder))
    return found


def run_key(base: Path, examples: list[Example], opts: TrainOptions) -> dict[str, Any]:
    """What a checkpoint must have been trained on to be resumed: the base, the options that shape the
    optimisation (not its length or checkpoint spacing) and a hash of the examples' token ids and masks."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps(e.features(), separators=(",", ":")).encode() + b"\n")
    shaping = {k: v for k, v in asdict(opts).items() if k not in ("epochs", "max_steps", "save_steps")}
    return {"base": str(base), "options": shaping, "examples": len(examples), "examples_sha256": digest.hexdigest()}


def _check_resume(out: Path, key: dict[str, Any]) -> str | None:
    """The checkpoint to resume from, after checking it was trained on ``key``; records ``key`` for a new run.

    Raises:
        CheckpointMismatchError: if the checkpoints were trained on something else.
    """
    resume = last_checkpoint(out)
    path = out / CHECKPOINTS_DIR / RUN_KEY
    if resume is not None and path.exists() and json.loads(path.read_text(encoding="utf-8")) != key:
        raise CheckpointMismatchError(
            f"{out / CHECKPOINTS_DIR} holds a run on other examples or options; delete it to train from the start"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    return resume


def train_lora(base: Path, examples: list[Example], out: Path, opts: TrainOptions) -> dict[str, Any]:
    """Fine-tune a LoRA adapter of ``base`` on ``examples``; saves it to ``out/adapter`` and returns counts.

    Raises:
        ValueError: if there are no examples.
        CheckpointMismatchError: if ``out/checkpoints`` was trained on other examples or options.
    """
    if not examples:
        raise ValueError("no training examples: nothing was accepted (sample more items or raise --max-seq-len)")
    resume = _check_resume(out, run_key(base, examples, opts))
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    if not cuda:  # every core this process may use (a vLLM engine in this process may have lowered it)
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if bf16 else torch.float32)
    lora = LoraConfig(
        r=opts.lora_r,
        lora_alpha=opts.lora_alpha or 2 * opts.lora_r,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    config = SFTConfig(
        output_dir=str(out / CHECKPOINTS_DIR),
        num_train_epochs=opts.epochs,
        max_steps=opts.max_steps if opts.max_steps is not None else -1,
        learning_rate=opts.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=opts.grad_accum,
        logging_steps=1,
        save_steps=opts.save_steps,
        save_total_limit=2,
        report_to=[],
        seed=opts.seed,
        data_seed=opts.seed,
        max_length=None,  # over-long examples were dropped before, never truncated here
        completion_only_loss=True,
        use_cpu=not cuda,
        bf16=bf16,
        dataloader_num_workers=0,
    )
    dataset = Dataset.from_list([e.features() for e in examples])
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
    result = trainer.train(resume_from_checkpoint=resume)
    adapter = out / ADAPTER_DIR
    trained: Any = trainer.model  # the PeftModel: saves the adapter alone
    trained.save_pretrained(str(adapter))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    counts = {
        "examples": len(examples),
        "hinted_examples": sum(e.hinted for e in examples),
        "completion_tokens": sum(len(e.completion_ids) for e in examples),
        "prompt_tokens": sum(len(e.prompt_ids) for e in examples),
        "optimizer_steps": trainer.state.global_step,
        "resumed_from": Path(resume).name if resume else None,
        "first_loss": round(losses[0], 4) if losses else None,
        "last_loss": round(losses[-1], 4) if losses else None,
        "train_loss": round(float(result.training_loss), 4),
        "device": "cuda" if cuda else "cpu",
        "dtype": "bfloat16" if bf16 else "float32",
        "torch_threads": torch.get_num_threads(),
    }
    return counts


def write_run_file(adapter: Path, run: dict[str, Any]) -> None:
    """The run's config and counts as ``adapter/grm_train.json`` (peft ignores it when loading)."""
    (adapter / RUN_FILE).write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")


def options_dict(opts: TrainOptions) -> dict[str, Any]:
    return asdict(opts)
