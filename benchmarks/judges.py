"""Every judge profile end to end on one model: how many samples parse, and whether every route answers.

For each profile (``--profiles``; default every built-in one) one grm-serve starts (``--judge NAME``,
format guidance on, ``--meta-rm none`` except for deepseek-grm, whose default ``auto`` is the embedded
meta RM) and gets, after one warm-up call:

* ``/v1/score``: a balanced subset of the dev pairs: ``--pairs-per-file`` pairs of each
  ``../shared/data/*-dev.jsonl``, taken round-robin over the file's ``subset`` strata (file order
  within one), one item per pair (the conversation; chosen and rejected as the two responses),
  ``return_samples`` on so that an unparseable sample's text comes back; ``--concurrency`` calls at once;
* every other route, with the first ``--route-pairs`` of those pairs: ``/get_reward`` (one call, the two
  responses as two rows in ChatML markup, the chosen response as each row's label: a reference where the
  judge has the slot, else dropped and reported, ``--openrlhf-labels auto``), ``/v1/reward`` (two
  concurrent one-rollout calls, which grouping across calls must bring together), ``/v1/rerank`` (the
  pair as two documents, the last user turn as the query) and ``/v1/render`` (a seeded item, whose engine
  requests must be the ones the judge's mode plans: one per distinct order of each judged set).

A call succeeds when it answers 200 and judges what it was sent: every response scored (no
``no_valid_samples``, ``unscored`` or ``unpaired``), a trainer route's ``label_ignored`` as the judge's
reference slot says, the two ``/v1/reward`` rollouts judged together. Samples, parsed samples and
generated tokens are the server's own counters (``/metrics``) over every call after the warm-up.

    python benchmarks/judges.py                                  # all profiles, embedded model
    python benchmarks/judges.py --profiles skywork-critic --pairs-per-file 2
    python benchmarks/judges.py --server-args "--engine fake"    # plumbing only (seconds)

Texts are cut to ``--max-chars`` characters each (prompt turns and responses), as the other benchmarks
cut them, so that prefill on a CPU stays within the run's budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.pipeline.judges import JUDGES, get_judge, judged_sets  # noqa: E402
from tests.launcher import launch  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DATASETS = ("rmb-dev.jsonl", "rm-bench-dev.jsonl", "judgebench-dev.jsonl", "hh-rlhf-harmless-dev.jsonl")
PARSED, UNPARSEABLE = 'grm_samples_total{status="parsed"}', 'grm_samples_total{status="unparseable"}'
COUNTERS = (
    PARSED,
    UNPARSEABLE,
    "grm_generation_tokens_total",
    "grm_prompt_tokens_total",
    "grm_queue_wait_seconds_count",  # one observation per engine request at the work gate
    "grm_continued_samples_total",
)
ROUTES = ("/v1/score", "/get_reward", "/v1/reward", "/v1/rerank", "/v1/render")
WARM = {"messages": [{"role": "user", "content": "What is 2+2?"}], "responses": ["4", "It is 5."]}


def balanced(path: Path, n: int) -> list[dict[str, Any]]:
    """``n`` pairs of a dev file, round-robin over its subsets (file order within each)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    strata: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        strata.setdefault(row["subset"], []).append(row)
    out: list[dict[str, Any]] = []
    while len(out) < min(n, len(rows)):
        for stratum in strata.values():
            if stratum and len(out) < n:
                out.append(stratum.pop(0))
    return out


def dev_pairs(per_file: int, max_chars: int, data: Path = DATA) -> list[dict[str, Any]]:
    """The balanced subset of every dev file, interleaved file by file, texts cut to ``max_chars``."""
    files = [balanced(data / name, per_file) for name in DATASETS]
    out = []
    for i in range(max(map(len, files))):
        for rows in files:
            if i < len(rows):
                r = rows[i]
                messages = [{"role": m["role"], "content": m["content"][:max_chars]} for m in r["messages"]]
                out.append(
                    {
                        "id": r["id"],
                        "messages": messages,
                        "responses": [r["chosen"][:max_chars], r["rejected"][:max_chars]],
                    }
                )
    return out


def chatml(messages: Sequence[dict[str, str]]) -> str:
    """The conversation in the embedded model's ChatML markup, the assistant's turn open (a policy's prompt)."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return f"<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n{turns}<|im_start|>assistant\n"


def server_args(profile: str, k: int, max_tokens: int, extra: str) -> list[str]:
    """grm-serve's flags for one profile (the meta RM is DeepSeek-GRM's alone: ``auto`` for it)."""
    args = ["--judge", profile, "--k", str(k), "--max-tokens", str(max_tokens), "--log-level", "warning"]
    args += ["--request-timeout-s", "7200"] + ([] if profile == "deepseek-grm" else ["--meta-rm", "none"])
    return args + extra.split()


def counters(url: str) -> dict[str, float]:
    """The server's counters in :data:`COUNTERS` (0 for one not exported yet)."""
    out = dict.fromkeys(COUNTERS, 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in out:
            out[name] = float(value)
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def planned_requests(profile: str, responses: int, k: int, max_group_size: int = 4) -> int:
    """Engine requests an item plans: one per distinct order of each judged set (pairing.py)."""
    judge = get_judge(profile)
    return sum(min(k, len(s)) for s in judged_sets(responses, max_group_size, judge, "circular"))


async def score_pairs(
    http: httpx.AsyncClient, url: str, pairs: list[dict[str, Any]], concurrency: int
) -> dict[str, Any]:
    """Every pair through ``/v1/score``: calls ok, and the unparseable samples' texts (a few)."""
    gate = asyncio.Semaphore(concurrency)
    ok, failures, bad_texts, cut = 0, [], [], 0

    async def one(pair: dict[str, Any]) -> None:
        nonlocal ok, cut
        body = {"messages": pair["messages"], "responses": pair["responses"], "return_samples": True}
        async with gate:
            r = await http.post(f"{url}/v1/score", json=body)
        if r.status_code != 200:
            failures.append(f"{pair['id']}: {r.status_code} {r.text[:200]}")
            return
        answer = r.json()
        ok += all(resp["status"] == "ok" for resp in answer["responses"])
        for s in answer["samples"]:
            cut += s["finish_reason"] == "length"
            if s["status"] == "unparseable":
                bad_texts.append(f"{pair['id']} ({s['finish_reason']}, {s['generation_tokens']} tokens): {s['text']!r}")

    await asyncio.gather(*(one(p) for p in pairs))
    return {"ok": ok, "calls": len(pairs), "failures": failures, "unparseable_texts": bad_texts, "cut": cut}


async def other_routes(
    http: httpx.AsyncClient, url: str, pairs: list[dict[str, Any]], profile: str, k: int
) -> dict[str, list[int]]:
    """Each route's [ok, calls] with these pairs (see the module docstring for what ok means)."""
    judge = get_judge(profile)
    ignored = None if judge.takes_reference else 1.0
    out = {route: [0, 0] for route in ROUTES[1:]}

    async def get_reward(p: dict[str, Any]) -> bool:
        prompt = chatml(p["messages"])
        body = {
            "query": [prompt + r + "<|im_end|>" for r in p["responses"]],
            "prompts": [prompt, prompt],
            "labels": [p["responses"][0]] * 2,
        }
        r = await http.post(f"{url}/get_reward", json=body)
        if r.status_code != 200:
            return False
        logs = r.json()["extra_logs"]
        return logs["grm_unscored"] == [0.0, 0.0] and logs.get("grm_label_ignored", [None, None]) == [ignored] * 2

    async def reward(p: dict[str, Any]) -> bool:
        bodies = [{"prompt": p["messages"], "response": r, "label": p["responses"][0]} for r in p["responses"]]
        answers = await asyncio.gather(*(http.post(f"{url}/v1/reward", json=b) for b in bodies))
        if any(a.status_code != 200 for a in answers):
            return False
        flag, size = None if ignored is None else True, 1 if judge.mode == "single" else 2
        return all(
            not a.json()["unscored"] and a.json()["group_size"] == size and a.json().get("label_ignored") == flag
            for a in answers
        )

    async def rerank(p: dict[str, Any]) -> bool:
        query = next(m["content"] for m in reversed(p["messages"]) if m["role"] == "user")
        r = await http.post(f"{url}/v1/rerank", json={"query": query, "documents": p["responses"]})
        return (
            r.status_code == 200 and len(r.json()["results"]) == 2 and all(x["votes"] > 0 for x in r.json()["results"])
        )

    async def render(p: dict[str, Any]) -> bool:
        r = await http.post(
            f"{url}/v1/render", json={"messages": p["messages"], "responses": p["responses"], "seed": 7}
        )
        return r.status_code == 200 and len(r.json()["requests"]) == planned_requests(profile, 2, k)

    calls = {"/get_reward": get_reward, "/v1/reward": reward, "/v1/rerank": rerank, "/v1/render": render}
    results = await asyncio.gather(*(calls[route](p) for route in calls for p in pairs))
    for (route, _), good in zip(((route, p) for route in calls for p in pairs), results, strict=True):
        out[route][0] += good
        out[route][1] += 1
    return out


def run_profile(profile: str, pairs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    extra = server_args(profile, args.k, args.max_tokens, args.server_args)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, launch(extra, log=Path(tmp) / "server.log") as srv:

        async def go() -> dict[str, Any]:
            async with httpx.AsyncClient(timeout=args.timeout) as http:
                (await http.post(f"{srv.url}/v1/score", json=WARM)).raise_for_status()  # warms the engine
                before, start = counters(srv.url), time.perf_counter()
                scored = await score_pairs(http, srv.url, pairs, args.concurrency)
                score_s = time.perf_counter() - start
                routes = await other_routes(http, srv.url, pairs[: args.route_pairs], profile, args.k)
                wall = time.perf_counter() - start
                counts = delta(counters(srv.url), before)
                return {"scored": scored, "routes": routes, "wall_s": wall, "score_s": score_s, "counts": counts}

        res = asyncio.run(go())
    c = res["counts"]
    total_s = time.perf_counter() - started
    samples = c[PARSED] + c[UNPARSEABLE]
    return {
        "profile": profile,
        "mode": get_judge(profile).mode,
        "pairs": len(pairs),
        "samples": int(samples),
        "parsed": int(c[PARSED]),
        "parse_rate": c[PARSED] / samples if samples else 0.0,
        "cut_by_budget": res["scored"]["cut"],
        "gen_tokens_per_sample": c["grm_generation_tokens_total"] / samples if samples else 0.0,
        "engine_requests": int(c["grm_queue_wait_seconds_count"]),
        "routes": {"/v1/score": [res["scored"]["ok"], res["scored"]["calls"]], **res["routes"]},
        "wall_s": res["wall_s"],
        "score_s": res["score_s"],
        "with_start_s": total_s,
        "failures": res["scored"]["failures"],
        "unparseable_texts": res["scored"]["unparseable_texts"],
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    head = "| profile | mode | pairs | samples | parsed | parse rate | cut by budget | gen tok/sample | "
    print(head + " | ".join(ROUTES) + " | wall s |")
    print("|---" * (9 + len(ROUTES)) + "|")
    for r in rows:
        routes = " | ".join(f"{ok}/{n}" for ok, n in (r["routes"][route] for route in ROUTES))
        print(
            f"| {r['profile']} | {r['mode']} | {r['pairs']} | {r['samples']} | {r['parsed']} | "
            f"{100 * r['parse_rate']:.1f}% | {r['cut_by_budget']} | {r['gen_tokens_per_sample']:.0f} | {routes} | "
            f"{r['wall_s']:.0f} |"
        )
    for r in rows:
        for line in r["failures"][:3] + r["unparseable_texts"][:3]:
            print(f"{r['profile']}: {line[:400]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default=",".join(JUDGES), help="comma-separated judge profiles")
    parser.add_argument("--pairs-per-file", type=int, default=10, help="dev pairs of each of the 4 files")
    parser.add_argument("--route-pairs", type=int, default=2, help="pairs sent through each other route")
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--max-chars", type=int, default=1000, help="cut each turn and response to this")
    parser.add_argument("--concurrency", type=int, default=16, help="/v1/score calls at once")
    parser.add_argument("--server-args", default="", help="more grm-serve flags, e.g. '--engine fake'")
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    pairs = dev_pairs(args.pairs_per_file, args.max_chars)
    profiles = [p for p in args.profiles.split(",") if p]
    print(f"{len(pairs)} dev pairs ({args.pairs_per_file} per file, texts cut to {args.max_chars} chars), "
          f"k={args.k}, max_tokens={args.max_tokens}, profiles: {', '.join(profiles)}", flush=True)  # fmt: skip
    start, rows = time.perf_counter(), []
    for profile in profiles:
        rows.append(run_profile(profile, pairs, args))
        r = rows[-1]
        print(f"  {profile}: {r['parsed']}/{r['samples']} parsed, /v1/score {r['score_s']:.0f} s, all routes "
              f"{r['wall_s']:.0f} s, with the server's start {r['with_start_s']:.0f} s", flush=True)  # fmt: skip
    print_table(rows)
    print(f"total wall time (servers' starts included): {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
