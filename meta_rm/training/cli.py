"""``grm-meta-rm``: sample GRM trajectories on preference data and train a meta reward model.

    grm-meta-rm train --data ../shared/data/*-dev.jsonl --per-source 32 --out meta_rm/default

``train`` samples k trajectories per item from the GRM (in-process, through the same pipeline as
the server), labels each one (correct only when the preferred response scores strictly highest),
fits the classifier on the training prompts and reports held-out AUC, accuracy and Voting@k versus
MetaRM@k on prompts it never saw. ``sample`` only fills the trajectory cache.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meta_rm.training.data import DataError, PreferenceItem, read_preferences, select_per_source
from meta_rm.training.extras import eval_extra_missing
from meta_rm.training.sampling import SamplingConfig, SamplingRun, run_sampling
from meta_rm.training.train import TrainOptions, train_command
from server.pipeline.prompts import DEFAULT_TEMPLATE

log = logging.getLogger("grm_meta_rm")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", type=Path, required=True, help="preference JSONL files")
    p.add_argument("--per-source", type=int, default=None, help="items drawn from each source (default: all)")
    p.add_argument("--model", default="embedded", help="the GRM: 'embedded', a local HF folder or a cached hub name")
    p.add_argument("--cache-dir", type=Path, default=None, help="where the embedded GRM is converted")
    p.add_argument("--k", type=int, default=8, help="samples per item")
    p.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (the paper's 0.5)")
    p.add_argument("--max-tokens", type=int, default=256, help="generation budget per sample")
    p.add_argument("--no-format-guidance", dest="format_guidance", action="store_false", help="sample unguided")
    p.add_argument("--seed", type=int, default=0, help="selects items and seeds sampling")
    p.add_argument("--concurrency", type=int, default=8, help="items in flight at once")
    p.add_argument("--trajectories", type=Path, required=True, help="JSONL cache of samples (resumed if present)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grm-meta-rm",
        description="Train and inspect the meta reward model that picks which GRM samples vote.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample", help="sample GRM trajectories into the cache only")
    _add_sampling_args(sample)
    train = sub.add_parser("train", help="sample (or reuse) trajectories, train, evaluate, save")
    _add_sampling_args(train)
    train.add_argument("--out", type=Path, required=True, help="folder to write the meta-RM artifact to")
    train.add_argument("--heldout-fraction", type=float, default=0.3, help="share of prompts kept for evaluation")
    train.add_argument("--no-sample", action="store_true", help="train on the cached trajectories only")
    return parser


def load_items(args: argparse.Namespace) -> list[PreferenceItem]:
    items: list[PreferenceItem] = []
    for path in args.data:
        items.extend(read_preferences(path))
    return select_per_source(items, args.per_source, args.seed)


def sampling_run(args: argparse.Namespace) -> SamplingRun:
    """The typed sampling run the flags describe."""
    config = SamplingConfig(
        model=args.model,
        template=DEFAULT_TEMPLATE,
        k=args.k,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        format_guidance=args.format_guidance,
        seed=args.seed,
    )
    return SamplingRun(config, args.trajectories, cache_dir=args.cache_dir, concurrency=args.concurrency)


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the engine is shut down, not orphaned."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if eval_extra_missing("grm-meta-rm", ("tqdm",)):
        return 2
    _interrupt_on_sigterm()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        items = load_items(args)
    except (DataError, OSError) as exc:
        print(f"grm-meta-rm: {exc}", file=sys.stderr)
        return 2
    log.info("%d items from %d file(s)", len(items), len(args.data))
    try:
        if args.command == "sample":
            records = asyncio.run(run_sampling(sampling_run(args), items))
            log.info("%d items with samples in %s", len(records), args.trajectories)
            return 0
        options = TrainOptions(
            sampling=sampling_run(args),
            out=args.out,
            data_files=tuple(args.data),
            per_source=args.per_source,
            heldout_fraction=args.heldout_fraction,
            sample=not args.no_sample,
        )
        return train_command(options, items)
    except KeyboardInterrupt:
        print(f"grm-meta-rm: interrupted; finished items are kept in {args.trajectories}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # spawn-safe: vLLM's engine process re-imports the main module
    sys.exit(main())
