"""A GRPO group's reward cost for every judge profile, side by side in one run.

Per profile, ``--prompts`` dev prompts with 8 rollouts each are scored two ways, each on a fresh
server (``benchmarks/judges.py``'s flags: ``--judge NAME``, ``--meta-rm none`` except deepseek-grm's
default), so that neither way finds the other's prompts in the engine's prefix cache:

* ``calls``: 8 one-row ``/get_reward`` calls per prompt (OpenRLHF's shape: ChatML prompt + rollout),
  every prompt's calls at once, as a GRPO step's rollouts finish: grouping across calls forms the
  groups (group judges) or pools of pairs (pairwise judges); a single-response judge scores each alone;
* ``item``: one ``/v1/score`` item of the 8 responses per prompt, the prompts' calls at once.

Rollouts: each prompt's chosen and rejected responses (cut to ``--max-chars``) and their prefixes of 3/4,
1/2 and 1/4 of their length, cut at a space: 8 distinct on-topic responses of different length and
quality. Prompts: the first single-turn pairs, one dev file after the other, whose two responses hold
at least 400 characters each.

Columns, per reward (one rollout's reward): engine requests (the work gate's count of every engine
request, two-pass continuations included), generated tokens, wall seconds; the plan's engine requests
for one 8-response item (one per distinct order of each judged set, ``pairing.py``: pools of
``--max-group-size``), and the samples parsed. Counters are the server's own (``/metrics``).

    python benchmarks/judges_grpo.py                               # all profiles, embedded model
    python benchmarks/judges_grpo.py --profiles skywork-critic,deepseek-grm --prompts 2
    python benchmarks/judges_grpo.py --server-args "--engine fake"  # plumbing only (seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judges import (
    DATA,
    DATASETS,
    PARSED,
    UNPARSEABLE,
    WARM,
    chatml,
    counters,
    delta,
    planned_requests,
    server_args,
)

from server.pipeline.judges import JUDGES, get_judge
from tests.launcher import launch

ROLLOUTS = 8
MIN_CHARS = 400
WAYS = ("calls", "item")


def shortened(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text``, cut back to the last space (a rollout that stopped early)."""
    cut = text[: int(len(text) * fraction)]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut


def groups(prompts: int, max_chars: int) -> list[dict[str, Any]]:
    """``prompts`` GRPO groups: a single-turn question and its 8 rollouts (see the module docstring)."""
    out: list[dict[str, Any]] = []
    for name in DATASETS * prompts:  # one file after the other, again and again
        rows = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
        used = {g["id"] for g in out}
        for r in rows:
            chosen, rejected = r["chosen"][:max_chars], r["rejected"][:max_chars]
            if r["id"] in used or len(r["messages"]) != 1 or min(len(chosen), len(rejected)) < MIN_CHARS:
                continue
            rollouts = [chosen, rejected] + [shortened(t, f) for f in (0.75, 0.5, 0.25) for t in (chosen, rejected)]
            out.append({"id": r["id"], "question": r["messages"][0]["content"][:max_chars], "rollouts": rollouts})
            break
        if len(out) == prompts:
            return out
    raise ValueError(f"fewer than {prompts} single-turn dev pairs with responses of {MIN_CHARS}+ characters")


async def calls_way(http: httpx.AsyncClient, url: str, batch: list[dict[str, Any]]) -> list[float]:
    """Every rollout as its own one-row /get_reward call, all at once; returns each row's group size."""

    async def one(question: str, rollout: str) -> float:
        prompt = chatml([{"role": "user", "content": question}])
        r = await http.post(f"{url}/get_reward", json={"query": [prompt + rollout + "<|im_end|>"], "prompts": [prompt]})
        r.raise_for_status()
        logs = r.json()["extra_logs"]
        return -1.0 if logs["grm_unscored"][0] else logs["grm_group_size"][0]

    return list(await asyncio.gather(*(one(g["question"], r) for g in batch for r in g["rollouts"])))


async def item_way(http: httpx.AsyncClient, url: str, batch: list[dict[str, Any]]) -> list[float]:
    """One /v1/score item of 8 responses per prompt, all at once; returns each response's group size."""

    async def one(g: dict[str, Any]) -> list[float]:
        body = {"messages": [{"role": "user", "content": g["question"]}], "responses": g["rollouts"]}
        r = await http.post(f"{url}/v1/score", json=body)
        r.raise_for_status()
        return [-1.0 if x["status"] != "ok" else x["group_size"] for x in r.json()["responses"]]

    return [size for sizes in await asyncio.gather(*(one(g) for g in batch)) for size in sizes]


def run_way(profile: str, way: str, batch: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, float]:
    flags = server_args(profile, args.k, args.max_tokens, args.server_args)
    flags += ["--max-group-size", str(args.max_group_size)]
    with tempfile.TemporaryDirectory() as tmp, launch(flags, log=Path(tmp) / "server.log") as srv:

        async def go() -> tuple[float, list[float], dict[str, float]]:
            async with httpx.AsyncClient(timeout=args.timeout) as http:
                (await http.post(f"{srv.url}/v1/score", json=WARM)).raise_for_status()  # warms the engine
                before, start = counters(srv.url), time.perf_counter()
                sizes = await (calls_way if way == "calls" else item_way)(http, srv.url, batch)
                wall = time.perf_counter() - start
                return wall, sizes, delta(counters(srv.url), before)

        wall, sizes, c = asyncio.run(go())
    rewards = len(sizes)
    samples = c[PARSED] + c[UNPARSEABLE]
    scored = [s for s in sizes if s > 0]
    return {
        "rewards": rewards,
        "unscored": rewards - len(scored),
        "mean_group_size": sum(scored) / len(scored) if scored else 0.0,
        "engine_requests": c["grm_queue_wait_seconds_count"],
        "continuations": c["grm_continued_samples_total"],
        "requests_per_reward": c["grm_queue_wait_seconds_count"] / rewards,
        "gen_tokens_per_reward": c["grm_generation_tokens_total"] / rewards,
        "prompt_tokens_per_reward": c["grm_prompt_tokens_total"] / rewards,
        "wall_s": wall,
        "wall_s_per_reward": wall / rewards,
        "samples": samples,
        "parsed": c[PARSED],
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    head = "| profile | mode | planned requests per group of 8 |"
    per_way = " requests/reward | gen tokens/reward | s/reward | parsed |"
    print(head + "".join(f" {w}:" + per_way.replace(" | ", f" | {w}: ") for w in WAYS))
    print("|---" * (3 + 4 * len(WAYS)) + "|")
    for r in rows:
        cells = [r["profile"], r["mode"], str(r["planned"])]
        for w in WAYS:
            x = r[w]
            cells += [f"{x['requests_per_reward']:.2f}", f"{x['gen_tokens_per_reward']:.0f}"]
            cells += [f"{x['wall_s_per_reward']:.2f}", f"{x['parsed']:.0f}/{x['samples']:.0f}"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default=",".join(JUDGES), help="comma-separated judge profiles")
    parser.add_argument("--prompts", type=int, default=4, help="GRPO groups (prompts), 8 rollouts each")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--max-group-size", type=int, default=4)
    parser.add_argument("--max-chars", type=int, default=600, help="cut the question and responses to this")
    parser.add_argument("--server-args", default="", help="more grm-serve flags, e.g. '--engine fake'")
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    batch = groups(args.prompts, args.max_chars)
    profiles = [p for p in args.profiles.split(",") if p]
    print(f"{args.prompts} prompts x {ROLLOUTS} rollouts ({', '.join(g['id'] for g in batch)}), k={args.k}, "
          f"max_tokens={args.max_tokens}, pools of {args.max_group_size}", flush=True)  # fmt: skip
    start, rows = time.perf_counter(), []
    for profile in profiles:
        row: dict[str, Any] = {"profile": profile, "mode": get_judge(profile).mode}
        row["planned"] = planned_requests(profile, ROLLOUTS, args.k, args.max_group_size)
        for way in WAYS:
            row[way] = run_way(profile, way, batch, args)
            x = row[way]
            print(f"  {profile} {way}: {x['engine_requests']:.0f} engine requests, {x['wall_s']:.0f} s, "
                  f"mean group {x['mean_group_size']:.2f}, unscored {x['unscored']}", flush=True)  # fmt: skip
        rows.append(row)
    print_table(rows)
    print(f"total wall time (servers' starts included): {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
