"""The stages of SPCT's rejective fine-tuning, each resumable from its output files in ``DIR``.

========  =====================================  ============================================
stage     reads                                  writes
========  =====================================  ============================================
sample    the data files                         ``samples.jsonl`` (k trajectories per item)
select    ``samples.jsonl``                      ``selection.json``, ``accepted.jsonl``
hint      ``selection.json`` (balanced: and      ``hinted_samples.jsonl``, ``hinted.jsonl``, ``hint.json``
          ``samples.jsonl``)
train     ``accepted.jsonl``, ``hinted.jsonl``   ``dataset.jsonl``, ``checkpoints/``, ``adapter/``
========  =====================================  ============================================

A stage reads another's output only if it was made from this run's samples: ``selection.json`` names the
sampling config and the items it selected over, ``hint.json`` the selection and hint config behind
``hinted.jsonl``; anything else (another ``--k``, ``--limit`` or ``--seed`` since) is refused, never reused.

Every stage appends its counts and wall seconds to ``log.jsonl``. The two sampling stages share one
engine, started only if a cache lacks something and shut down before training.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grm_train.runlog import StageLog, read_jsonl, write_jsonl
from grm_train.selection import Trajectory, cap_hinted, rebalance, select
from grm_train.train import (
    ADAPTER_DIR,
    RUN_FILE,
    CheckpointMismatchError,
    TrainOptions,
    options_dict,
    train_lora,
    write_run_file,
)
from meta_rm.training.data import PreferenceItem
from meta_rm.training.sampling import SamplingConfig
from server.engines.base import Engine

STAGES = ("sample", "select", "hint", "train")


class StageError(RuntimeError):
    """A stage cannot run (its input is missing or empty); the message says what to do."""


@dataclass(frozen=True)
class RunSpec:
    """Everything a run is configured with."""

    out: Path
    items: list[PreferenceItem]
    config: SamplingConfig  # the plain sampling stage's (the cache key)
    hint_k: int
    max_hinted_per_item: int
    max_seq_len: int
    train: TrainOptions
    cache_dir: Path | None = None
    concurrency: int = 8
    balanced: bool = False  # position-balanced selection (grm_train.selection)


def _files(out: Path) -> dict[str, Path]:
    names = ("samples.jsonl", "selection.json", "accepted.jsonl", "hinted_samples.jsonl", "hinted.jsonl")
    return {n.split(".")[0]: out / n for n in names} | {"dataset": out / "dataset.jsonl", "hint": out / "hint.json"}


def _records_by_id(spec: RunSpec, cache: Path, config: SamplingConfig) -> dict[str, dict[str, Any]]:
    from meta_rm.training.sampling import load_cache

    cached = load_cache(cache, config)
    return {i.id: cached[i.id] for i in spec.items if i.id in cached}


def _current_selection(spec: RunSpec, stage: str) -> dict[str, Any]:
    """``selection.json``, if it was made from the samples this run has (its config and items).

    Raises:
        StageError: if it is missing or was made from other samples.
    """
    path = _files(spec.out)["selection"]
    if not path.exists():
        raise StageError(f"{stage}: no selection.json; run the select stage first")
    summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    sampled = sorted(_records_by_id(spec, _files(spec.out)["samples"], spec.config))
    if summary.get("config") != spec.config.as_key() or summary.get("items") != sampled:
        raise StageError(
            f"{stage}: selection.json was made from other samples (another sampling config or item set); "
            "run the select stage again"
        )
    if bool(summary.get("balanced", False)) != spec.balanced:
        was = "with" if summary.get("balanced") else "without"
        raise StageError(f"{stage}: selection.json was made {was} --balance-positions; run the select stage again")
    return summary


def _hint_key(spec: RunSpec) -> dict[str, Any]:
    """What ``hinted.jsonl`` depends on, recorded in ``hint.json``."""
    from grm_train.sampling import hint_config

    selection = _files(spec.out)["selection"].read_bytes()
    return {
        "selection_sha256": hashlib.sha256(selection).hexdigest(),
        "config": hint_config(spec.config, spec.hint_k).as_key(),
        "max_hinted_per_item": spec.max_hinted_per_item,
    }


async def sampling_stages(
    spec: RunSpec, stages: set[str], log: StageLog, make_engine: Callable[[], Engine] | None = None
) -> None:
    """The sample, select and hint stages that ``stages`` names, in order, on one engine.

    Raises:
        StageError: if a stage's input is missing.
        server.engines.EngineError: if the engine fails.
    """
    from grm_train.sampling import Session, hint_config

    f = _files(spec.out)
    session = Session(spec.config.model, spec.cache_dir, spec.concurrency, spec.config.format_guidance, make_engine)
    try:
        if "sample" in stages:
            with log.stage("sample") as counts:
                records, c = await session.sample(spec.items, spec.config, f["samples"], hinted=False, desc="sample")
                counts.update(c, k=spec.config.k, samples=sum(len(r["samples"]) for r in records))
                counts["parsed"] = sum(s["status"] == "parsed" for r in records for s in r["samples"])
                counts["generation_tokens"] = sum(s["generation_tokens"] for r in records for s in r["samples"])
        if "select" in stages:
            with log.stage("select") as counts:
                records_by_id = _records_by_id(spec, f["samples"], spec.config)
                if not records_by_id:
                    raise StageError("select: no sampled items in samples.jsonl for this config; run the sample stage")
                chosen = select(list(records_by_id.values()), balanced=spec.balanced)
                write_jsonl(f["accepted"], [t.to_json() for t in chosen.accepted])
                summary = {
                    "config": spec.config.as_key(),
                    "items": sorted(records_by_id),
                    "balanced": spec.balanced,
                    "counts": chosen.counts(),
                    "hint_needed": chosen.hint_needed,
                }
                f["selection"].write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
                counts.update(chosen.counts())
        if "hint" in stages:
            with log.stage("hint") as counts:
                needed = set(_current_selection(spec, "hint")["hint_needed"])
                items = [i for i in spec.items if i.id in needed]
                config = hint_config(spec.config, spec.hint_k)
                records, c = await session.sample(items, config, f["hinted_samples"], hinted=True, desc="hint")
                plain = _records_by_id(spec, f["samples"], spec.config) if spec.balanced else None
                kept, hc = cap_hinted(records, spec.max_hinted_per_item, plain)
                write_jsonl(f["hinted"], [t.to_json() for t in kept])
                f["hint"].write_text(json.dumps(_hint_key(spec), indent=1) + "\n", encoding="utf-8")
                counts.update(c, **hc, cap=spec.max_hinted_per_item)
    finally:
        await session.close()


def train_stage(spec: RunSpec, log: StageLog) -> None:
    """Build the dataset from the accepted (and kept hinted) trajectories and train the adapter.

    Raises:
        StageError: if there is nothing to train on, or no accepted.jsonl.
    """
    from transformers import AutoTokenizer

    from grm_train.dataset import build_examples, within
    from server.engines.model_files import default_cache_dir, resolve_model
    from server.pipeline.judges.deepseek import DeepSeekGRM
    from server.pipeline.prompts import get_template

    f = _files(spec.out)
    adapter = spec.out / ADAPTER_DIR
    if (adapter / RUN_FILE).exists():
        print(f"grm-train: train: {adapter} exists (delete it to train again)", flush=True)
        return
    if not f["accepted"].exists():
        raise StageError("train: no accepted.jsonl; run the select stage first")
    _current_selection(spec, "train")
    if f["hinted"].exists():
        made = json.loads(f["hint"].read_text(encoding="utf-8")) if f["hint"].exists() else None
        if made != _hint_key(spec):
            raise StageError(
                "train: hinted.jsonl was made from another selection or hint config; run the hint stage again "
                "(or delete hinted.jsonl to train without hinted trajectories)"
            )
    with log.stage("train") as counts:
        trajectories = [Trajectory.from_json(d) for d in read_jsonl(f["accepted"])]
        hinted = [Trajectory.from_json(d) for d in read_jsonl(f["hinted"])] if f["hinted"].exists() else []
        records = _records_by_id(spec, f["samples"], spec.config)  # hinted items are among them too
        base, _ = resolve_model(spec.config.model, spec.cache_dir or default_cache_dir())
        tokenizer = AutoTokenizer.from_pretrained(base)
        judge = DeepSeekGRM(template=get_template(spec.config.template))
        sources = trajectories + hinted
        built = build_examples(tokenizer, judge, records, sources)
        fit = within(built, spec.max_seq_len)
        too_long = len(built) - len(fit)
        n_hinted = sum(t.hinted for t in hinted)  # balanced: hinted.jsonl also holds the completed items' plain ones
        counts.update(accepted=len(sources) - n_hinted, hinted=n_hinted, dropped_too_long=too_long)
        if spec.balanced:  # the cut drops single trajectories: keep each item's positions even
            keep = rebalance([sources[i] for i in fit], records)
            counts["dropped_unbalanced"] = len(fit) - len(keep)
            fit = [fit[i] for i in keep]
        examples = [built[i] for i in fit]
        write_jsonl(f["dataset"], [e.to_json() for e in examples])
        if not examples:
            raise StageError(f"train: no example fits --max-seq-len {spec.max_seq_len} ({too_long} longer)")
        try:
            counts.update(train_lora(Path(base), examples, spec.out, spec.train))
        except CheckpointMismatchError as exc:
            raise StageError(f"train: {exc}") from None
        run = {
            "tool": "grm-train rft",
            "base_model": spec.config.model,
            "sampling": spec.config.as_key(),
            "hint_k": spec.hint_k,
            "max_hinted_per_item": spec.max_hinted_per_item,
            "balanced": spec.balanced,
            "max_seq_len": spec.max_seq_len,
            "train": options_dict(spec.train),
            "stages": [r for r in log.records() if r.get("stage") in STAGES] + [{"stage": "train", "counts": counts}],
        }
        write_run_file(adapter, run)


def run(spec: RunSpec, stages: set[str], make_engine: Callable[[], Engine] | None = None) -> None:
    """Run the named stages in order (see the module docstring); ``make_engine`` builds the sampling
    engine (default: vLLM on the spec's model).

    Raises:
        StageError, server.engines.EngineError, server.engines.model_files.ModelNotFoundError.
    """
    from grm_train.sampling import MAX_GROUP_SIZE

    # The paper's rule needs every response in one judgment: a larger item would be split into groups whose
    # scores cannot say whether the preferred response is first among all of them.
    wide = next((i for i in spec.items if len(i.responses) > MAX_GROUP_SIZE), None)
    if wide is not None:
        raise StageError(
            f"item {wide.id} has {len(wide.responses)} responses; grm-train judges an item's responses together, "
            f"at most {MAX_GROUP_SIZE}"
        )
    spec.out.mkdir(parents=True, exist_ok=True)
    log = StageLog(spec.out / "log.jsonl")
    if stages & {"sample", "select", "hint"}:
        asyncio.run(sampling_stages(spec, stages, log, make_engine))
    if "train" in stages:
        train_stage(spec, log)
