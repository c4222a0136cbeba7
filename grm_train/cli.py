"""``grm-train``: fine-tune a GRM on preference data with SPCT's rejective fine-tuning (RFT).

    grm-train rft --data ../shared/data/train/*.jsonl --limit 60 --k 4 --out runs/rft

For each item (pairs or best-of-N, the dev files' schema) it samples k judgments with the GRM through
grm-serve's own pipeline (template, format guidance, parser, shuffled orders), keeps those whose scores
put the preferred response strictly first, rejects items the judge always gets right (too easy),
samples the items it never gets right again with a hint naming the preferred response (the training
prompt has no hint), then fine-tunes a LoRA adapter on what was kept, with the loss on the judge's
output only. Serve the result with ``grm-serve --adapter DIR/adapter``; measure it with
``grm-eval --adapter DIR/adapter``. Every stage resumes from its files in ``--out`` (docs/training.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from grm_train.rft import STAGES, RunSpec, StageError, run
from grm_train.train import TrainOptions
from meta_rm.training.data import DataError
from meta_rm.training.extras import extra_missing
from meta_rm.training.sampling import SamplingConfig

TRAIN_MODULES = ("peft", "trl", "datasets", "tqdm")


def _stages(text: str) -> set[str]:
    chosen = {s.strip() for s in text.split(",") if s.strip()}
    unknown = sorted(chosen - set(STAGES))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"--stages takes a comma-separated subset of {','.join(STAGES)}")
    return chosen


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grm-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("rft", help="rejective fine-tuning (sample, select, hint, train)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    r.add_argument("--data", nargs="+", type=Path, required=True, help="preference JSONL files (pairs or best-of-N)")
    r.add_argument("--out", type=Path, required=True, help="run folder: caches, log.jsonl, checkpoints, adapter/")
    r.add_argument("--stages", type=_stages, default=set(STAGES), help="comma-separated (default: all)")
    r.add_argument("--model", default="embedded", help="the GRM: embedded, a local HF folder or a cached hub name")
    r.add_argument("--cache-dir", type=Path, default=None, help="where the embedded GRM is converted")
    r.add_argument("--limit", type=_positive, default=None, help="items per file, a seeded draw (default: all)")
    r.add_argument("--skip-ids", type=Path, default=None, help="JSONL whose 'id's to leave out (e.g. eval items)")
    r.add_argument(
        "--max-item-chars", type=_positive, default=None,
        help="draw only items whose conversation and responses total at most this many characters (cost cut)",
    )  # fmt: skip
    r.add_argument("--k", type=_positive, default=4, help="trajectories sampled per item (default 4)")
    r.add_argument("--hint-k", type=_positive, default=None, help="hinted trajectories per unsolved item (default: k)")
    r.add_argument("--max-hinted-per-item", type=int, default=1, help="hinted trajectories kept per item (default 1)")
    r.add_argument(
        "--balance-positions", action="store_true",
        help="keep as many correct trajectories with the preferred response at each position as at any other "
        "(per item); counters a judge's position bias (not in the paper)",
    )  # fmt: skip
    r.add_argument("--max-tokens", type=int, default=256, help="generation budget per trajectory (default 256)")
    r.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (the paper's 0.5)")
    r.add_argument("--no-format-guidance", dest="format_guidance", action="store_false")
    r.add_argument("--seed", type=int, default=0, help="item draw, sampling and training seed")
    r.add_argument("--concurrency", type=_positive, default=8, help="items in flight at once while sampling")
    r.add_argument("--epochs", type=float, default=1.0, help="passes over the examples (default 1)")
    r.add_argument("--max-steps", type=_positive, default=None, help="optimizer steps, overriding --epochs")
    r.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4, cosine decay)")
    r.add_argument("--lora-r", type=_positive, default=16, help="LoRA rank (alpha = 2 r)")
    r.add_argument("--grad-accum", type=_positive, default=4, help="examples per optimizer step (default 4)")
    r.add_argument("--save-steps", type=_positive, default=10, help="checkpoint every N optimizer steps")
    r.add_argument("--max-seq-len", type=_positive, default=2048, help="drop (and count) longer examples")
    return p


def spec_of(args: argparse.Namespace) -> RunSpec:
    """The run's spec from the parsed flags (reads the data files).

    Raises:
        DataError, OSError: for unreadable data.
    """
    from grm_eval.selection import read_ids, select
    from server.pipeline.prompts import DEFAULT_TEMPLATE

    skip = read_ids(args.skip_ids) if args.skip_ids else set()
    items = [item for _, item in select(args.data, args.limit, args.seed, skip, max_chars=args.max_item_chars)]
    config = SamplingConfig(
        args.model, DEFAULT_TEMPLATE, args.k, args.temperature, args.max_tokens, args.format_guidance, args.seed
    )
    train = TrainOptions(
        epochs=args.epochs, lr=args.lr, lora_r=args.lora_r, max_steps=args.max_steps, grad_accum=args.grad_accum,
        save_steps=args.save_steps, seed=args.seed,
    )  # fmt: skip
    return RunSpec(
        out=args.out,
        items=items,
        config=config,
        hint_k=args.hint_k or args.k,
        max_hinted_per_item=args.max_hinted_per_item,
        max_seq_len=args.max_seq_len,
        train=train,
        cache_dir=args.cache_dir,
        concurrency=args.concurrency,
        balanced=args.balance_positions,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_hinted_per_item < 0:
        parser.error("--max-hinted-per-item must be >= 0")
    if extra_missing("grm-train", "train", TRAIN_MODULES):
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from server.engines import EngineError
    from server.engines.model_files import ModelNotFoundError

    try:
        spec = spec_of(args)
    except (DataError, OSError) as exc:
        print(f"grm-train: {exc}", file=sys.stderr)
        return 2
    stages = ",".join(s for s in STAGES if s in args.stages)
    print(f"grm-train: {len(spec.items)} items from {len(args.data)} file(s); stages {stages}", flush=True)
    try:
        run(spec, args.stages)
    except (StageError, ModelNotFoundError, EngineError) as exc:
        print(f"grm-train: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"grm-train: interrupted; rerun the same command to resume from {args.out}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # spawn-safe: vLLM's engine process re-imports the main module
    sys.exit(main())
