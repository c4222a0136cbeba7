"""From cached samples to the report: figures (JSON), a Markdown table and a PNG plot."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grm_eval.bootstrap import LEVEL, RESAMPLES, file_intervals
from grm_eval.metrics import Vote, flips, meta_rm_accuracy, voting_accuracy
from meta_rm.training.data import PreferenceItem, file_sha256
from meta_rm.training.train import trajectories_of

log = logging.getLogger("grm_eval")


def votes_of(record: dict[str, Any], ratings: Sequence[float | None] | None = None) -> list[Vote]:
    out = []
    for i, s in enumerate(record["samples"]):
        scores = tuple(s["scores"]) if s["status"] == "parsed" and s["scores"] is not None else None
        meta = ratings[i] if ratings is not None else s.get("meta_score")
        out.append(Vote(tuple(s["permutation"]), scores, meta if scores is not None else None))
    return out


def meta_rm_spec(args: argparse.Namespace) -> str | None:
    """The meta RM to rate samples with: ``auto`` is the embedded one for the embedded GRM, but none with an
    adapter (it was trained on the base model's samples), as ``grm-serve --meta-rm auto`` decides."""
    if args.meta_rm == "none":
        return None
    if args.meta_rm == "auto":
        if getattr(args, "adapter", None) is not None:
            log.info("--meta-rm auto: no meta RM with --adapter (the embedded one rates the base model's samples)")
            return None
        return "embedded" if args.url is None and args.model == "embedded" else None
    return str(args.meta_rm)


def rate(records: Sequence[dict[str, Any]], spec: str) -> tuple[list[list[float | None]], str]:
    """Meta-RM ratings of every parsed sample (None for unparsed), and the meta RM's name."""
    from meta_rm.loading import load_meta_rm
    from server.engines.model_files import default_cache_dir, resolve_model

    meta = load_meta_rm(spec, resolve=lambda name: resolve_model(name, default_cache_dir()))
    flat = [(r, j, e[0]) for r, rec in enumerate(records) for j, e in enumerate(trajectories_of(rec)) if e]

    async def go() -> list[float]:
        await meta.start()
        try:
            return await meta.score([t for _, _, t in flat])
        finally:
            await meta.shutdown()

    scores = asyncio.run(go())
    ratings: list[list[float | None]] = [[None] * len(rec["samples"]) for rec in records]
    for (r, j, _), x in zip(flat, scores, strict=True):
        ratings[r][j] = x
    return ratings, meta.info.name


def _mean(xs: Sequence[float]) -> float | None:
    return round(statistics.fmean(xs), 4) if xs else None


def _figures(rows: Sequence[dict[str, Any]], ks: Sequence[int], meta: bool, greedy: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"items": len(rows)}
    out["voting"] = {str(k): _mean([r["voting"][k] for r in rows]) for k in ks}
    out["meta_rm"] = {str(k): _mean([r["meta_rm"][k] for r in rows]) for k in ks} if meta else None
    out["greedy"] = _mean([r["greedy"] for r in rows if r["greedy"] is not None]) if greedy else None
    return out


def build_report(
    args: argparse.Namespace,
    chosen: Sequence[tuple[Path, PreferenceItem]],
    records: Sequence[dict[str, Any]],
    greedy: Sequence[dict[str, Any]] | None,
) -> dict[str, Any]:
    """Every figure of the run. Raises ``ValueError`` if no item has samples."""
    if not records:
        raise ValueError("no item has samples")
    spec = meta_rm_spec(args)
    by_id = {r["id"]: r for r in records}
    greedy_by_id = {r["id"]: r for r in greedy} if greedy is not None else {}
    ratings: dict[str, list[float | None]] = {}
    meta_name = None
    if spec is not None:
        all_ratings, meta_name = rate(records, spec)
        ratings = {rec["id"]: rr for rec, rr in zip(records, all_ratings, strict=True)}
    server_meta = spec is None and any(s.get("meta_score") is not None for r in records for s in r["samples"])
    with_meta = spec is not None or server_meta

    rows = []
    for path, item in chosen:
        rec = by_id.get(item.id)
        if rec is None:
            continue
        n, pref = len(item.responses), item.preferred
        votes = votes_of(rec, ratings.get(item.id))
        g = greedy_by_id.get(item.id)
        rows.append(
            {
                "id": item.id,
                "file": path.name,
                "source": item.source,
                "subset": item.subset,
                "voting": {k: voting_accuracy(votes, n, pref, k) for k in args.k},
                "meta_rm": {k: meta_rm_accuracy(votes, n, pref, k) for k in args.k} if with_meta else None,
                "greedy": voting_accuracy(votes_of(g), n, pref, 2) if g is not None else None,
                "parsed": sum(v.scores is not None for v in votes),
                "samples": len(votes),
                "tokens": sum(s["generation_tokens"] for s in rec["samples"]),
                "flip": flips(votes, n),
                "greedy_flip": flips(votes_of(g), n) if g is not None else None,
            }
        )
    subsets: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        subsets[(r["source"], r["subset"])].append(r)
    by_subset = [
        {"source": s, "subset": sub, **_figures(rs, args.k, with_meta, greedy is not None)}
        for (s, sub), rs in sorted(subsets.items())
    ]

    def macro(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"subsets": len(entries)}
        out["voting"] = {str(k): _mean([e["voting"][str(k)] for e in entries]) for k in args.k}
        if with_meta:
            out["meta_rm"] = {str(k): _mean([e["meta_rm"][str(k)] for e in entries]) for k in args.k}
        if greedy is not None:
            out["greedy"] = _mean([e["greedy"] for e in entries if e["greedy"] is not None])
        return out

    sources = sorted({r["source"] for r in rows})
    flip_values = [r["flip"] for r in rows if r["flip"] is not None]
    greedy_flips = [r["greedy_flip"] for r in rows if r["greedy_flip"] is not None]
    total_samples = sum(r["samples"] for r in rows)
    return {
        "tool": "grm-eval",
        "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "model": args.model,
            "adapter": _adapter(args),
            "url": args.url,
            "template": records[0]["config"]["template"],
            "k": args.k,
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "format_guidance": args.format_guidance,
            "seed": args.seed,
            "limit_per_file": args.limit,
            "skipped_ids_from": args.skip_ids.name if args.skip_ids else None,
            "meta_rm": meta_name or ("server's" if server_meta else None),
            "greedy": greedy is not None,
        },
        "data_files": {p.name: file_sha256(p) for p in args.data},
        "overall": {
            **_figures(rows, args.k, with_meta, greedy is not None),
            "parse_rate": _ratio(sum(r["parsed"] for r in rows), total_samples, 4),
            "mean_generation_tokens": _ratio(sum(r["tokens"] for r in rows), total_samples, 1),
            "flip_rate_sampled": _mean([float(f) for f in flip_values]),
            "flip_rate_greedy": _mean([float(f) for f in greedy_flips]),
        },
        "macro": {"all_subsets": macro(by_subset)}
        | {s: macro([e for e in by_subset if e["source"] == s]) for s in sources},
        "by_subset": by_subset,
        **by_file(rows, args.k, args.seed),
        "items": [{"id": r["id"], "file": r["file"], "voting": {str(k): r["voting"][k] for k in args.k}} for r in rows],
    }


def by_file(rows: Sequence[dict[str, Any]], ks: Sequence[int], seed: int) -> dict[str, Any]:
    """Per data file: Voting@k (mean over its items) with a 95% bootstrap interval, parse and flip rate;
    and the macro mean over files with its interval (:mod:`grm_eval.bootstrap`)."""
    files: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        files[r["file"]].append(r)
    scores = {f: [[r["voting"][k] for k in ks] for r in rs] for f, rs in files.items()}
    intervals, macro_ci = file_intervals(scores, resamples=RESAMPLES, seed=seed)
    out: dict[str, Any] = {}
    for f, rs in sorted(files.items()):
        flip_values = [float(r["flip"]) for r in rs if r["flip"] is not None]
        out[f] = {
            "items": len(rs),
            "voting": {str(k): _mean([r["voting"][k] for r in rs]) for k in ks},
            "voting_ci": {str(k): ci for k, ci in zip(ks, intervals[f], strict=True)},
            "parse_rate": _ratio(sum(r["parsed"] for r in rs), sum(r["samples"] for r in rs), 4),
            "flip_rate_sampled": _mean(flip_values),
        }
    macro_files = {
        "files": len(out),
        "voting": {str(k): _mean([e["voting"][str(k)] for e in out.values()]) for k in ks},
        "voting_ci": {str(k): ci for k, ci in zip(ks, macro_ci, strict=True)},
    }
    bootstrap = {"resamples": RESAMPLES, "level": LEVEL, "seed": seed, "resampled": "items, within each file"}
    return {"by_file": out, "macro_files": macro_files, "bootstrap": bootstrap}


def _adapter(args: argparse.Namespace) -> dict[str, str] | None:
    info = getattr(args, "adapter_info", None)
    return {"name": info.name, "sha256": info.sha256} if info is not None else None


def _ratio(a: float, b: float, digits: int) -> float | None:
    return round(a / b, digits) if b else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def markdown(report: dict[str, Any]) -> str:
    cfg, o = report["config"], report["overall"]
    ks = [str(k) for k in cfg["k"]]
    meta = o["meta_rm"] is not None
    head = ["set", "items"] + [f"Voting@{k}" for k in ks] + ([f"MetaRM@{k}" for k in ks] if meta else [])
    head += ["greedy"] if cfg["greedy"] else []

    def row(name: str, f: dict[str, Any], n: Any) -> str:
        cells = [name, str(n)] + [_pct(f["voting"][k]) for k in ks]
        cells += [_pct(f["meta_rm"][k]) for k in ks] if meta else []
        cells += [_pct(f.get("greedy"))] if cfg["greedy"] else []
        return "| " + " | ".join(cells) + " |"

    lines = [
        f"# grm-eval report: {cfg['model']}"
        + (f" + adapter {a['name']} ({a['sha256'][:12]})" if (a := cfg.get("adapter")) else ""),
        "",
        f"Template `{cfg['template']}`, temperature {cfg['temperature']}, max_tokens {cfg['max_tokens']}, "
        f"seed {cfg['seed']}, meta RM: {cfg['meta_rm'] or 'none'}. Accuracy in %, ties count half.",
        "",
        f"- items: {o['items']}; samples parsed: {_pct(o['parse_rate'])}%; "
        f"mean generated tokens per sample: {o['mean_generation_tokens']}",
        f"- position bias (verdict flips when the pair swaps places): sampled {_pct(o['flip_rate_sampled'])}%, "
        f"greedy {_pct(o['flip_rate_greedy'])}%",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        row("**all items**", o, o["items"]),
    ]
    for name, m in report["macro"].items():
        label = "**macro, all subsets**" if name == "all_subsets" else f"macro {name}"
        lines.append(row(label, m, f"{m['subsets']} subsets"))
    lines += ["", *file_table(report, ks)]
    lines += ["", "Per subset:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in report["by_subset"]:
        lines.append(row(f"{e['source']} / {e['subset']}", e, e["items"]))
    return "\n".join(lines) + "\n"


def _ci(f: dict[str, Any], k: str) -> str:
    low, high = f["voting_ci"][k]
    return f"{_pct(f['voting'][k])} [{_pct(low)}, {_pct(high)}]"


def file_table(report: dict[str, Any], ks: Sequence[str]) -> list[str]:
    """Per file and macro over files: Voting@k with its 95% bootstrap interval, parse and flip rate."""
    if "by_file" not in report:  # a report written before intervals existed
        return []
    b = report["bootstrap"]
    head = ["file", "items"] + [f"Voting@{k} [95% CI]" for k in ks] + ["parsed", "flips"]
    lines = [
        f"Per data file, with {100 * b['level']:.0f}% percentile-bootstrap intervals ({b['resampled']}, "
        f"{b['resamples']} resamples, seed {b['seed']}):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, f in report["by_file"].items():
        cells = [name, str(f["items"]), *(_ci(f, k) for k in ks), _pct(f["parse_rate"]), _pct(f["flip_rate_sampled"])]
        lines.append("| " + " | ".join(cells) + " |")
    m = report["macro_files"]
    lines.append(
        "| " + " | ".join(["**macro over files**", f"{m['files']} files", *(_ci(m, k) for k in ks)]) + " | | |"
    )
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = report["config"]["k"]
    o = report["overall"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    voting = [100 * o["voting"][str(k)] for k in ks]
    ax.plot(ks, voting, marker="o", label="Voting@k")
    # One standard error of a mean of n item scores in [0, 1]: differences inside the band are noise.
    se = [100 * math.sqrt(max(v / 100 * (1 - v / 100), 0.0) / max(o["items"], 1)) for v in voting]
    low = [v - e for v, e in zip(voting, se, strict=True)]
    high = [v + e for v, e in zip(voting, se, strict=True)]
    ax.fill_between(ks, low, high, alpha=0.15, label="Voting@k ± 1 s.e.")
    if o["meta_rm"] is not None:
        ax.plot(ks, [100 * o["meta_rm"][str(k)] for k in ks], marker="s", label="MetaRM@k (k/2 kept)")
    if o.get("greedy") is not None:
        ax.axhline(100 * o["greedy"], linestyle="--", color="grey", label="greedy")
    ax.axhline(50, linestyle=":", color="lightgrey", label="chance (pairs)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k (samples per item)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{report['config']['model']}: {o['items']} items")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    plot(report, out / "accuracy_vs_k.png")
