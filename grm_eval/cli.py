"""``grm-eval``: judge preference data with a GRM and report accuracy against k.

    grm-eval --data ../shared/data/rm-bench-dev.jsonl --k 1,2,4,8 --out reports/rm-bench

It samples every item once at the largest k (in-process through vLLM, or from a running server with
``--url``), caches the samples as it goes (``--resume`` continues an interrupted run; Ctrl-C keeps
what is done), then computes from that one pool: Voting@k for each k, MetaRM@k when a meta RM is set,
greedy accuracy when ``--greedy`` is given, per subset and macro, parse rate, generated tokens and
position-bias flip rate, and writes ``report.json``, ``report.md`` and ``accuracy_vs_k.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grm_eval.selection import read_ids, select
from meta_rm.training.data import DataError
from meta_rm.training.extras import eval_extra_missing
from meta_rm.training.sampling import SamplingConfig

log = logging.getLogger("grm_eval")


def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k wants comma-separated integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError("--k values must be >= 1")
    return ks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grm-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", nargs="+", type=Path, required=True, help="preference JSONL files (pairs or best-of-N)")
    p.add_argument("--out", type=Path, required=True, help="report folder (samples cache inside)")
    p.add_argument("--k", type=_ks, default=[1, 2, 4, 8], help="k values, e.g. 1,2,4,8 (default)")
    p.add_argument("--limit", type=int, default=None, help="items per file, a seeded draw (default: all)")
    p.add_argument("--skip-ids", type=Path, default=None, help="JSONL whose 'id's to leave out (e.g. training data)")
    p.add_argument("--samples", type=Path, default=None, help="samples cache (default: OUT/samples.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue from the samples already in the cache")
    p.add_argument("--greedy", action="store_true", help="also measure greedy accuracy (temperature 0, both orders)")
    p.add_argument("--meta-rm", default="auto", help="auto (embedded for the embedded GRM), none, folder or hub name")
    p.add_argument("--url", default=None, help="judge through a running grm-serve instead of in-process")
    p.add_argument("--api-key", default=None, help="API key for --url")
    p.add_argument("--model", default="embedded", help="in-process GRM: embedded, a local folder or cached hub name")
    p.add_argument(
        "--adapter", type=Path, default=None, help="in-process: a peft LoRA adapter merged onto --model (grm-train rft)"
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="where the embedded GRM is converted")
    p.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (the paper's 0.5)")
    p.add_argument("--max-tokens", type=int, default=256, help="generation budget per sample")
    p.add_argument("--no-format-guidance", dest="format_guidance", action="store_false")
    p.add_argument("--seed", type=int, default=0, help="item draw and sampling seeds")
    p.add_argument("--concurrency", type=int, default=8, help="items in flight at once")
    return p


def sampling_config(args: argparse.Namespace, *, greedy: bool = False) -> SamplingConfig:
    from server.pipeline.prompts import DEFAULT_TEMPLATE

    model = args.url or args.model
    adapter = args.adapter_info.sha256 if args.adapter_info is not None else None
    if greedy:
        return SamplingConfig(
            model, DEFAULT_TEMPLATE, 2, 0.0, args.max_tokens, args.format_guidance, args.seed, adapter=adapter
        )
    return SamplingConfig(
        model, DEFAULT_TEMPLATE, args.k_max, args.temperature, args.max_tokens, args.format_guidance, args.seed,
        adapter=adapter,
    )  # fmt: skip


def collect(args: argparse.Namespace, items: list[Any], cache: Path, *, greedy: bool = False) -> list[dict[str, Any]]:
    """Fill ``cache`` for ``items`` (sampling only what is missing) and return their records."""
    from tqdm import tqdm

    from meta_rm.training.sampling import load_cache

    config = sampling_config(args, greedy=greedy)
    cached = load_cache(cache, config)
    missing = [i for i in items if i.id not in cached]
    if not missing:
        return [cached[i.id] for i in items]
    if args.url is None:
        from grm_eval.runner import sample_in_process
        from meta_rm.training.sampling import SamplingRun

        run = SamplingRun(config, cache, cache_dir=args.cache_dir, concurrency=args.concurrency, adapter=args.adapter)
        return sample_in_process(run, items)
    from grm_eval.runner import sample_over_http

    bar = tqdm(total=len(missing), desc="greedy" if greedy else "sampling", unit="item", dynamic_ncols=True)

    def on_done(tokens: int, parsed: int) -> None:
        bar.update(1)

    try:
        return asyncio.run(
            sample_over_http(
                args.url, items, config, cache, concurrency=args.concurrency, api_key=args.api_key, on_done=on_done
            )
        )
    finally:
        bar.close()


def served_model_or_last(args: argparse.Namespace) -> str:
    """The model the server at ``--url`` runs; when it is gone (a report re-run from a complete cache), the
    model the last report in ``--out`` named, else the URL."""
    import httpx

    from grm_eval.runner import served_model

    try:
        return served_model(args.url, args.api_key)
    except httpx.HTTPError as exc:
        last = args.out / "report.json"
        try:
            model = str(json.loads(last.read_text(encoding="utf-8"))["config"]["model"])
        except (OSError, ValueError, KeyError, TypeError):
            model = args.url
        log.warning("cannot ask %s for its model (%s); the report names %s", args.url, type(exc).__name__, model)
        return model


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if eval_extra_missing("grm-eval", ("tqdm", "matplotlib")):
        return 2
    args.k_max = max(args.k)
    args.adapter_info = None
    if args.adapter is not None:
        if args.url is not None:
            print("grm-eval: --adapter is for in-process judging; serve it with grm-serve --adapter", file=sys.stderr)
            return 2
        from server.engines.adapters import AdapterError, read_adapter

        try:
            args.adapter_info = read_adapter(args.adapter)  # its hash keys the samples cache
        except AdapterError as exc:
            print(f"grm-eval: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO, which would break the progress bar's line once per item.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    cache = args.samples or args.out / "samples.jsonl"
    if cache.exists() and not args.resume:
        print(f"grm-eval: {cache} exists; pass --resume to continue it, or choose another --out", file=sys.stderr)
        return 2
    try:
        skip = read_ids(args.skip_ids) if args.skip_ids else set()
        chosen = select(args.data, args.limit, args.seed, skip)
    except (DataError, OSError) as exc:
        print(f"grm-eval: {exc}", file=sys.stderr)
        return 2
    items = [item for _, item in chosen]
    log.info("%d items from %d file(s)%s", len(items), len(args.data), f", {len(skip)} ids skipped" if skip else "")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        records = collect(args, items, cache)
        greedy_cache = cache.with_name(cache.stem + "-greedy.jsonl")
        greedy = collect(args, items, greedy_cache, greedy=True) if args.greedy else None
    except KeyboardInterrupt:
        print(f"grm-eval: interrupted; finished items are kept in {args.out} (rerun with --resume)", file=sys.stderr)
        return 130
    except (ValueError, LookupError) as exc:
        from server.engines.adapters import AdapterError
        from server.engines.model_files import ModelNotFoundError

        if not isinstance(exc, AdapterError | ModelNotFoundError):
            raise
        print(f"grm-eval: {exc}", file=sys.stderr)  # an adapter that does not fit, a model not found
        return 2
    from grm_eval.report import build_report, write_report

    if args.url is not None:
        args.model = served_model_or_last(args)  # the report and plot name the model, not the URL
    report = build_report(args, chosen, records, greedy)
    write_report(report, args.out)
    print((args.out / "report.md").read_text())
    return 0


if __name__ == "__main__":  # spawn-safe: vLLM's engine process re-imports the main module
    sys.exit(main())
