"""Hard votes against soft votes on a real judge, side by side in one run (issue #32).

GRPO groups of 8 rollouts (``judges_grpo.py``'s: a dev prompt's chosen and rejected responses and their
prefixes of 3/4, 1/2 and 1/4 of their length) are scored by one grm-serve, each group as one
``/v1/score`` item, four ways, all groups of a way at once:

* ``full A``: full k, ``votes: "soft"``, seeds A, samples returned. Every sample carries the integer it
  wrote (``scores``) and the expectation of the judge's distribution at that position (``soft_scores``),
  so hard and soft rewards come from the very same samples: a response's reward is its mean vote.
* ``full B``: the same with other seeds: the seed-to-seed figures.
* ``confident hard`` and ``confident soft``: ``adaptive: "confident"`` with seeds A (its samples are a
  prefix of ``full A``'s), hard and soft votes: samples per reward and agreement with full k.

Printed, hard and soft side by side: the tie rate of rollout pairs within a group (a tie gives GRPO no
gradient between the two), groups with a tie, the rank correlation (Spearman) of each response's reward
under seeds A and seeds B (pooled and within groups), how often the chosen response beats the rejected
one, the ``confident`` rule's samples per reward and agreement with full k (pairwise order of the
group's responses) next to the noise floor (full A against full B), and the per-vote spread: how far a
soft vote lies from the hard vote it came with (the sd ``benchmarks/adaptive.py --soft-sd`` takes).

    python benchmarks/soft_votes_grpo.py                       # embedded model, 16 groups, k=8
    python benchmarks/soft_votes_grpo.py --groups 4 --server-args "--engine fake"   # plumbing only (seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judges import WARM, server_args
from judges_grpo import groups

from tests.launcher import launch

SEEDS_A, SEEDS_B = 0, 1_000_003
TIE = 1e-9


def ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (ties share the mean of their places), 1-based."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            out[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation; None when either side is constant (no order to correlate)."""
    rx, ry = ranks(x), ranks(y)
    if len(set(rx)) < 2 or len(set(ry)) < 2:
        return None
    return statistics.correlation(rx, ry)


def mean_votes(answer: dict[str, Any], key: str) -> list[float | None]:
    """Each response's mean vote over the answer's parsed samples, from ``scores`` or ``soft_scores``."""
    votes: list[list[float]] = [[] for _ in answer["responses"]]
    for s in answer["samples"]:
        if s["status"] != "parsed" or s.get(key) is None:
            continue
        for index, vote in zip(s["responses"], s[key], strict=True):
            if vote is not None:
                votes[index].append(float(vote))
    return [statistics.mean(v) if v else None for v in votes]


def pair_orders(means: Sequence[float | None]) -> list[int | None]:
    """The sign of every pair's difference (0 a tie, None when either has no reward)."""
    out: list[int | None] = []
    for a, b in itertools.combinations(means, 2):
        out.append(None if a is None or b is None else (0 if abs(a - b) <= TIE else (1 if a > b else -1)))
    return out


def agreement(x: list[list[int | None]], y: list[list[int | None]]) -> float:
    """Share of pairs (over all groups) whose order is the same in ``x`` and ``y``, in %."""
    same = [a == b for gx, gy in zip(x, y, strict=True) for a, b in zip(gx, gy, strict=True) if a is not None]
    return 100.0 * sum(same) / len(same) if same else float("nan")


def tie_stats(means: list[list[float | None]]) -> dict[str, float]:
    orders = [pair_orders(m) for m in means]
    pairs = [o for g in orders for o in g if o is not None]
    return {
        "tied pairs %": 100.0 * sum(o == 0 for o in pairs) / len(pairs),
        "groups with a tie %": 100.0 * sum(any(o == 0 for o in g) for g in orders) / len(orders),
        "groups all tied %": 100.0 * sum(all(o == 0 for o in g if o is not None) for g in orders) / len(orders),
    }


def stability(a: list[list[float | None]], b: list[list[float | None]]) -> dict[str, float | None]:
    both = [(x, y) for ga, gb in zip(a, b, strict=True) for x, y in zip(ga, gb, strict=True) if None not in (x, y)]
    within = []
    for ga, gb in zip(a, b, strict=True):
        kept = [(x, y) for x, y in zip(ga, gb, strict=True) if None not in (x, y)]
        rho = spearman([x for x, _ in kept], [y for _, y in kept]) if len(kept) > 2 else None
        if rho is not None:
            within.append(rho)
    pooled = spearman([x for x, _ in both], [y for _, y in both])
    return {
        "seed-to-seed rho (pooled)": pooled,
        "seed-to-seed rho (within group, mean)": statistics.mean(within) if within else None,
        "groups with a defined rho": float(len(within)),
    }


def chosen_wins(means: list[list[float | None]]) -> float:
    """How often the chosen response (rollout 0) beats the rejected one (rollout 1), ties counted half, in %."""
    got = [m for m in means if m[0] is not None and m[1] is not None]
    return 100.0 * sum(1.0 if m[0] > m[1] + TIE else 0.5 if abs(m[0] - m[1]) <= TIE else 0.0 for m in got) / len(got)


def vote_spread(answers: list[dict[str, Any]]) -> dict[str, float]:
    """How far each soft vote lies from the hard vote it came with, over every parsed sample."""
    diffs = [
        float(soft) - float(hard)
        for a in answers
        for s in a["samples"]
        if s["status"] == "parsed" and s.get("soft_scores") is not None
        for hard, soft in zip(s["scores"], s["soft_scores"], strict=True)
        if soft is not None
    ]
    sources: dict[str, int] = {}
    for a in answers:
        for s in a["samples"]:
            if s["status"] == "parsed":
                sources[str(s.get("soft_source"))] = sources.get(str(s.get("soft_source")), 0) + 1
    return {
        "votes": float(len(diffs)),
        "rms(soft - hard)": statistics.fmean(d * d for d in diffs) ** 0.5 if diffs else float("nan"),
        "mean |soft - hard|": statistics.fmean(abs(d) for d in diffs) if diffs else float("nan"),
        "soft == hard %": 100.0 * sum(abs(d) < 1e-6 for d in diffs) / len(diffs) if diffs else float("nan"),
        **{f"samples {k}": float(v) for k, v in sorted(sources.items())},
    }


async def score_all(url: str, batch: list[dict[str, Any]], options: dict[str, Any], seed0: int, timeout: float):
    async with httpx.AsyncClient(timeout=timeout) as http:

        async def one(i: int, g: dict[str, Any]) -> dict[str, Any]:
            body = {"messages": [{"role": "user", "content": g["question"]}], "responses": g["rollouts"],
                    "seed": seed0 + 1000 * i, "return_samples": True, **options}  # fmt: skip
            r = await http.post(f"{url}/v1/score", json=body)
            r.raise_for_status()
            return r.json()

        start = time.perf_counter()
        answers = await asyncio.gather(*(one(i, g) for i, g in enumerate(batch)))
        return list(answers), time.perf_counter() - start


WAYS = (
    ("full A", {"votes": "soft"}, SEEDS_A),
    ("full B", {"votes": "soft"}, SEEDS_B),
    ("confident hard", {"votes": "hard", "adaptive": "confident"}, SEEDS_A),
    ("confident soft", {"votes": "soft", "adaptive": "confident"}, SEEDS_A),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=16, help="GRPO groups (dev prompts, 8 rollouts each)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--max-chars", type=int, default=500, help="prompt and rollouts cut to this many characters")
    parser.add_argument("--max-group-size", type=int, default=4)
    parser.add_argument("--server-args", default="--meta-rm none", help="more grm-serve flags")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--timeout", type=float, default=7200)
    args = parser.parse_args()
    batch = groups(args.groups, args.max_chars)
    flags = server_args("deepseek-grm", args.k, args.max_tokens, args.server_args)
    flags += ["--max-group-size", str(args.max_group_size), "--no-dedup-identical-requests"]
    print(f"{len(batch)} groups of 8 rollouts, k={args.k}, max_tokens={args.max_tokens}, server: {' '.join(flags)}")
    answers: dict[str, list[dict[str, Any]]] = {}
    walls: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, launch(flags, log=Path(tmp) / "server.log") as srv:
        httpx.post(f"{srv.url}/v1/score", json=WARM, timeout=args.timeout).raise_for_status()
        for name, options, seed0 in WAYS:
            answers[name], walls[name] = asyncio.run(score_all(srv.url, batch, options, seed0, args.timeout))
            print(f"  {name}: {walls[name]:.1f} s")
    hard = {n: [mean_votes(a, "scores") for a in answers[n]] for n in ("full A", "full B")}
    soft = {n: [mean_votes(a, "soft_scores") for a in answers[n]] for n in ("full A", "full B")}
    floor = {"hard": hard, "soft": soft}
    figures: dict[str, Any] = {"groups": len(batch), "k": args.k, "wall_s": walls}
    for votes in ("hard", "soft"):
        means = floor[votes]
        rule = answers[f"confident {votes}"]
        rule_means = [[r["mean_score"] for r in a["responses"]] for a in rule]
        full_orders = [pair_orders(m) for m in means["full A"]]
        figures[votes] = {
            **tie_stats(means["full A"]),
            **stability(means["full A"], means["full B"]),
            "chosen beats rejected %": chosen_wins(means["full A"]),
            "noise floor: full A vs full B agree %": agreement(full_orders, [pair_orders(m) for m in means["full B"]]),
            "confident: samples per reward / full k": statistics.mean(a["total_samples"] for a in rule)
            / statistics.mean(a["total_samples"] for a in answers["full A"]),
            "confident: rounds": statistics.mean(a["rounds"] for a in rule),
            "confident: agrees with full A %": agreement([pair_orders(m) for m in rule_means], full_orders),
        }
    figures["spread"] = vote_spread(answers["full A"] + answers["full B"])
    rows = list(figures["hard"])
    print("\n| figure | hard votes | soft votes |\n|---|---|---|")
    for row in rows:
        h, s = figures["hard"][row], figures["soft"][row]
        print(f"| {row} | {'-' if h is None else f'{h:.3g}'} | {'-' if s is None else f'{s:.3g}'} |")
    print("\nper vote (full A and B, every parsed sample): " + ", ".join(
        f"{k} {v:.3g}" for k, v in figures["spread"].items()))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
