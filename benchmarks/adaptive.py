"""Adaptive k, side by side in one run: full k against each stopping rule (``rank``, ``stderr``, ``confident``).

Two parts, each printed as one table:

* **model**: the embedded GRM (or ``--server-args "--model ..."``) behind one grm-serve, scoring real
  preference pairs from ``../shared/data`` (round-robin over its dev sets, texts cut to
  ``--max-response-chars``). Every pair is scored five times, all pairs of a mode at once: ``rank``
  ``stderr`` and ``confident`` first, then full k with the same seeds (``full``), the same again, and full k with
  other seeds. Columns: generated tokens per reward (from each answer's usage), samples per pair,
  rounds, the mode's wall time and median call latency, how often its pairwise decision (which
  response has the higher mean vote, or a tie) agrees with ``full``, for how many pairs every sample
  it drew is one ``full`` drew too (same order shown, same text) and how often it agrees on those,
  and how often it prefers the chosen response.

  ``full, other seeds`` against ``full`` is the noise floor: how often two full-k runs agree at all.
  ``full, same seeds again`` shows how far the engine reproduces its own samples (vLLM does not
  promise it when the batch differs); ``rank`` promises the full-k order on the same samples, so its
  agreement is checked on the pairs whose samples came out the same. A full-k pass with seeds of its
  own runs first and is not reported: it fills the prefix cache with every prompt, so no mode pays
  prefill another skips. Dedup is off, so every mode really runs.
* **simulation** (labelled so): a judge whose votes for a response are drawn from a normal
  distribution around its quality (sd ``--sim-sd``), rounded and clamped to 1..10, two responses
  ``separation`` apart, from indistinguishable (0) to clear; the pipeline is grm-serve's own
  (``Scorer`` with its rounds) on a scripted engine. Columns as above, wall time replaced by rounds
  (each costs one generation's latency on a real engine), plus how often the better response wins;
  one table per k (``--sim-ks 8 16 32``), a row per separation and one for their even mixture.

    python benchmarks/adaptive.py                      # both parts: embedded model, 32 pairs, k=8
    python benchmarks/adaptive.py --part sim           # the simulation alone (a minute)
    python benchmarks/adaptive.py --part sim --sim-ks 8 16 32 --epsilons --deltas 0.01 0.05 0.1
    python benchmarks/adaptive.py --pairs 64 --max-tokens 1024 --server-args "--model /models/grm"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.pipeline.adaptive import AdaptiveOptions  # noqa: E402
from server.pipeline.domain import Message  # noqa: E402
from server.pipeline.judges import DeepSeekGRM  # noqa: E402
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template  # noqa: E402
from server.pipeline.scoring import Scorer, ScoreSpec  # noqa: E402
from tests.launcher import launch  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from sim_judge import distribution_judge, rounded_judge  # noqa: E402

DATASETS = ("rmb-dev.jsonl", "rm-bench-dev.jsonl", "judgebench-dev.jsonl", "hh-rlhf-harmless-dev.jsonl")
OTHER_SEEDS = 1_000_003


def decision(means: Sequence[float | None]) -> int | None:
    """+1 when the first response's mean vote is higher, -1 when lower, 0 on a tie, None when unscored."""
    a, b = means
    if a is None or b is None:
        return None
    return (a > b) - (a < b)


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [row[c] if isinstance(row[c], str) else f"{row[c]:.3g}" for c in columns]
        print("| " + " | ".join(cells) + " |")


def drawn(answer: dict[str, Any]) -> Counter:
    """An answer's samples as (order shown, text or scores and critique), to compare two runs' samples."""
    return Counter((tuple(x["permutation"]), x["text"] or f"{x['scores']} {x['critique']}") for x in answer["samples"])


def agreement(decisions: list[int | None], reference: list[int | None]) -> float:
    return 100.0 * sum(d == r for d, r in zip(decisions, reference, strict=True)) / len(reference)


# ---- model part --------------------------------------------------------------------------------


def load_pairs(data: Path, n: int, max_chars: int) -> list[dict[str, Any]]:
    """``n`` pairs, round-robin over the dev sets, texts cut to ``max_chars``; chosen first."""
    sets = []
    for name in DATASETS:
        rows = [json.loads(line) for line in (data / name).read_text().splitlines() if line.strip()]
        sets.append([r for r in rows if len(r["messages"]) == 1])
    pairs = []
    for i in range(n):
        row = sets[i % len(sets)][i // len(sets)]
        pairs.append({
            "query": row["messages"][0]["content"][:max_chars],
            "responses": [row["chosen"][:max_chars], row["rejected"][:max_chars]],
        })  # fmt: skip
    return pairs


MODES: list[tuple[str, dict[str, Any], int]] = [
    ("rank", {"adaptive": "rank"}, 0),
    ("stderr", {"adaptive": "stderr"}, 0),
    ("confident", {"adaptive": "confident"}, 0),
    ("full", {}, 0),
    ("full, same seeds again", {}, 0),
    ("full, other seeds", {}, OTHER_SEEDS),
]


async def score_all(url: str, pairs: list[dict[str, Any]], options: dict[str, Any], seed0: int, timeout: float):
    async with httpx.AsyncClient(timeout=timeout) as http:

        async def one(i: int, pair: dict[str, Any]) -> tuple[dict[str, Any], float]:
            started = time.perf_counter()
            body = {**pair, **options, "seed": seed0 + i, "return_samples": True}
            r = await http.post(f"{url}/v1/score", json=body)
            r.raise_for_status()
            return r.json(), time.perf_counter() - started

        started = time.perf_counter()
        answers = await asyncio.gather(*(one(i, p) for i, p in enumerate(pairs)))
        return answers, time.perf_counter() - started


def run_model(args: argparse.Namespace) -> None:
    pairs = load_pairs(args.data, args.pairs, args.max_response_chars)
    # No dedup: "full, same seeds again" must run again, not get the first run's answers back.
    server_args = ["--log-level", "warning", "--k", str(args.k), "--max-tokens", str(args.max_tokens)]
    server_args += ["--no-dedup-identical-requests"]
    server_args += ["--max-inflight-samples", str(args.max_inflight_samples)] if args.max_inflight_samples else []
    server_args += args.server_args.split()
    print(f"model: {len(pairs)} pairs from {', '.join(DATASETS)} (texts cut to {args.max_response_chars} chars), "
          f"k={args.k}, max_tokens={args.max_tokens}, server args: {' '.join(server_args)}")  # fmt: skip
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, launch(server_args, log=Path(tmp) / "server.log") as srv:
        # Warm up: one full-k pass with seeds of its own puts every prompt (every order) in the prefix
        # cache, so no mode pays the prefill the others skip. Not reported.
        asyncio.run(score_all(srv.url, pairs, {}, 2 * OTHER_SEEDS, args.timeout))
        info = httpx.get(f"{srv.url}/v1/info", timeout=30).json()
        print(f"meta RM: {(info['meta_rm'] or {}).get('name', 'none')}; defaults: {info['defaults']}")
        for name, options, seed0 in MODES:
            results[name] = asyncio.run(score_all(srv.url, pairs, options, seed0, args.timeout))
    reference = [decision([r["mean_score"] for r in a["responses"]]) for a, _ in results["full"][0]]
    full_samples = [drawn(a) for a, _ in results["full"][0]]
    rows = []
    for name, _, _ in MODES:
        answers, wall = results[name]
        decisions = [decision([r["mean_score"] for r in a["responses"]]) for a, _ in answers]
        same = [not (drawn(a) - f) for (a, _), f in zip(answers, full_samples, strict=True)]
        on_same = [d == r for d, r, x in zip(decisions, reference, same, strict=True) if x]
        rows.append({
            "mode": name,
            "gen tokens/reward": sum(a["usage"]["generation_tokens"] for a, _ in answers) / (2 * len(answers)),
            "samples/pair": statistics.mean(a["total_samples"] for a, _ in answers),
            "rounds": statistics.mean(a["rounds"] for a, _ in answers),
            "wall s": wall,
            "p50 call s": statistics.median(t for _, t in answers),
            "agrees with full %": agreement(decisions, reference),
            "samples as full's %": 100.0 * sum(same) / len(same),
            "agrees where so %": 100.0 * sum(on_same) / len(on_same) if on_same else float("nan"),
            "prefers chosen %": 100.0 * sum(d == 1 for d in decisions) / len(decisions),
        })  # fmt: skip
    table(rows, list(rows[0]))
    full, again, floor = rows[3], rows[4], rows[5]
    for row in rows[:3]:
        tokens = row["gen tokens/reward"] / full["gen tokens/reward"]
        wall, p50 = row["wall s"] / full["wall s"], row["p50 call s"] / full["p50 call s"]
        print(f"{row['mode']} / full: gen tokens {tokens:.3f}, wall time {wall:.3f}, p50 latency {p50:.3f}; "
              f"agreement with full {row['agrees with full %']:.1f}% (full with the same seeds again: "
              f"{again['agrees with full %']:.1f}%, noise floor: {floor['agrees with full %']:.1f}%)")  # fmt: skip


# ---- simulation part ---------------------------------------------------------------------------


def sim_modes(args: argparse.Namespace) -> list[tuple[str, AdaptiveOptions, int]]:
    k_min = args.k_min
    return [
        ("full", AdaptiveOptions(), 0),
        ("full, other seeds", AdaptiveOptions(), OTHER_SEEDS),
        *([("rank", AdaptiveOptions("rank", k_min=k_min), 0)] if args.rank else []),
        *((f"stderr eps={e:g}", AdaptiveOptions("stderr", epsilon=e, k_min=k_min), 0) for e in args.epsilons),
        *((f"confident d={d:g}", AdaptiveOptions("confident", delta=d, k_min=k_min), 0) for d in args.deltas),
    ]


async def simulate_k(scorer: Scorer, args: argparse.Namespace, k: int, votes: str = "hard") -> None:
    """One table at ``k`` and ``votes``: a row per separation and one for their even mixture, a cell per mode."""
    modes = sim_modes(args)
    stats: dict[tuple[float, str], dict[str, Any]] = {}
    for separation in args.separations:
        center = 5.5
        pairs = [(f"a{i} quality={center + separation / 2}", f"b{i} quality={center - separation / 2}")
                 for i in range(args.sim_pairs)]  # fmt: skip
        outcomes: dict[str, list[Any]] = {}
        for name, options, seed0 in modes:
            specs = [ScoreSpec((Message("user", "Which is better?"),), pair, k, 0.5, 1.0, 256, seed=seed0 + i,
                               adaptive=options, votes=votes) for i, pair in enumerate(pairs)]  # fmt: skip
            outcomes[name] = await scorer.score_many(specs)
        reference = [decision([r.mean_score for r in x.responses]) for x in outcomes["full"]]
        for name, _, _ in modes:
            decisions = [decision([r.mean_score for r in x.responses]) for x in outcomes[name]]
            stats[separation, name] = {
                "samples": statistics.mean(len(x.samples) for x in outcomes[name]) / 2,
                "rounds": statistics.mean(x.rounds for x in outcomes[name]),
                "agrees": agreement(decisions, reference),
                "wins": 100.0 * sum(d == 1 for d in decisions) / len(decisions) if separation else None,
            }
    rows = [*args.separations, "mixture"]
    for name, _, _ in modes:  # the even mixture: every separation's pairs together
        cells = [stats[s, name] for s in args.separations]
        wins = [c["wins"] for c in cells if c["wins"] is not None]
        stats["mixture", name] = {
            "samples": statistics.mean(c["samples"] for c in cells),
            "rounds": statistics.mean(c["rounds"] for c in cells),
            "agrees": statistics.mean(c["agrees"] for c in cells),
            "wins": statistics.mean(wins) if wins else None,
        }
    shown = [name for name, _, _ in modes if not name.startswith("full")]
    head = f"\nk={k}, {votes} votes: each cell samples per reward (full k: {k // 2}) · rounds · agrees with full k %"
    print(head + " · better wins %")
    print("| separation | full k: better wins % | noise floor % | " + " | ".join(f"`{n}`" for n in shown) + " |")
    print("|" + "---|" * (3 + len(shown)))
    for row in rows:

        def fmt(x: float | None) -> str:
            return "-" if x is None else f"{x:.3g}"

        cells = [f"{fmt(stats[row, n]['samples'])} · {fmt(stats[row, n]['rounds'])} · {fmt(stats[row, n]['agrees'])}"
                 f" · {fmt(stats[row, n]['wins'])}" for n in shown]  # fmt: skip
        full, floor = stats[row, "full"], stats[row, "full, other seeds"]
        print(f"| {row} | {fmt(full['wins'])} | {fmt(floor['agrees'])} | " + " | ".join(cells) + " |")
    for name in shown:  # the target: <= 0.6x samples, agreement >= floor everywhere, wins within 1 point
        ratio = stats["mixture", name]["samples"] / stats["mixture", "full"]["samples"]
        below = [s for s in args.separations if stats[s, name]["agrees"] < stats[s, "full, other seeds"]["agrees"]]
        lost = max((stats[s, "full"]["wins"] - stats[s, name]["wins"] for s in args.separations if s), default=0.0)
        print(f"k={k} {votes} {name}: {ratio:.3f}x full k's samples on the mixture; agreement below the noise floor at "
              f"separations {below or 'none'}; better-wins at most {lost:.1f} points below full k")  # fmt: skip


async def simulate(args: argparse.Namespace) -> None:
    judge = DeepSeekGRM(template=get_template(DEFAULT_TEMPLATE))
    if args.soft_sd is None:  # the rounded judge: hard votes only
        engine, kinds = rounded_judge(args.sim_sd), ["hard"]
        model = f"vote sd {args.sim_sd}, rounded"
    else:
        engine, kinds = distribution_judge(args.sim_sd, args.soft_sd), args.votes
        model = f"hard-vote sd {args.sim_sd}, drawn from the judge's distribution of sd {args.soft_sd} (soft: its mean)"
    scorer = Scorer(judge, generate=engine, max_group_size=4, format_guidance=False)
    print(f"\nSIMULATION (not a model): {args.sim_pairs} pairs per separation, {model}, "
          f"k_min={args.k_min}; the first response is the better one (or equal at separation 0)")  # fmt: skip
    for votes in kinds:
        for k in args.sim_ks or [args.k]:
            await simulate_k(scorer, args, k, votes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["model", "sim", "both"], default="both")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-response-chars", type=int, default=600)
    parser.add_argument("--max-inflight-samples", type=int, default=None, help="grm-serve's engine batch bound")
    parser.add_argument("--server-args", default="", help="more grm-serve flags, e.g. '--meta-rm none'")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--sim-pairs", type=int, default=1000)
    parser.add_argument("--sim-sd", type=float, default=1.5)
    parser.add_argument("--k-min", type=int, default=4, help="simulation: k_min of the adaptive modes")
    parser.add_argument("--separations", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    parser.add_argument("--epsilons", type=float, nargs="*", default=[0.25, 0.5, 0.75], help="stderr rule's")
    parser.add_argument("--deltas", type=float, nargs="*", default=[0.01, 0.05, 0.1], help="confident rule's")
    parser.add_argument("--no-rank", dest="rank", action="store_false", help="simulation: leave rank out")
    parser.add_argument(
        "--soft-sd",
        type=float,
        default=None,
        help="simulation: the judge's own per-vote spread (soft_votes_grpo.py's rms(soft - hard)); "
        "with it the judge draws hard votes from a distribution whose mean is the soft vote",
    )
    parser.add_argument(
        "--votes",
        nargs="+",
        choices=["hard", "soft"],
        default=["hard", "soft"],
        help="simulation with --soft-sd: which votes to run",
    )
    parser.add_argument("--sim-ks", type=int, nargs="*", default=None, help="simulation: several k (default --k)")
    args = parser.parse_args()
    if args.part in ("model", "both"):
        run_model(args)
    if args.part in ("sim", "both"):
        asyncio.run(simulate(args))


if __name__ == "__main__":
    main()
