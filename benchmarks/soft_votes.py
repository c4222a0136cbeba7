"""Soft votes against hard votes on one server: what a soft-vote call costs, and how its votes differ.

One grm-serve starts (``--server-args``; default the embedded model on vLLM, the server's own defaults
otherwise) and, after one warm-up call of each kind, gets ``--repeats`` rounds of two batch calls on the
first ``--pairs`` pairs of ``--data`` (one item per pair, chosen and rejected as the two responses, seed
= the pair's index plus 1000 times the round): ``votes: "hard"`` then ``votes: "soft"``, the same seeds,
so both draw the same samples (asking for logprobs changes no sampling) and the difference is what soft
votes add: the engine's top logprobs, the scoring passes and the reading. Reports each call's wall time,
the soft/hard ratio, the scoring passes (``grm_soft_vote_passes_total``), the soft samples that could not
be read (``no_soft_score``), how many soft samples came back the same as the hard call's (the CPU engine
does not always reproduce a seeded sample when its batch differs), and per soft sample how far each soft
vote lies from the hard score that sample wrote.

    python benchmarks/soft_votes.py                                 # 8 smoke pairs, k=4, embedded model
    python benchmarks/soft_votes.py --server-args "--engine fake"   # plumbing only (seconds)
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.launcher import launch  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "smoke.jsonl"
PASSES = "grm_soft_vote_passes_total"


def items(pairs: list[dict[str, Any]], k: int, max_tokens: int, votes: str, base_seed: int) -> list[dict[str, Any]]:
    return [
        {"messages": p["messages"], "responses": [p["chosen"], p["rejected"]], "k": k, "max_tokens": max_tokens,
         "seed": base_seed + i, "votes": votes, "return_samples": True}
        for i, p in enumerate(pairs)
    ]  # fmt: skip


def counter(metrics: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name + " "))


def call(client: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    r = client.post("/v1/score", json=body)
    seconds = time.perf_counter() - started
    r.raise_for_status()
    return seconds, r.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--server-args", default="--engine vllm --model embedded")
    args = parser.parse_args()
    lines = args.data.read_text().splitlines()
    pairs = [json.loads(line) for line in lines if line.strip()][: args.pairs]
    log = Path(tempfile.mkdtemp()) / "server.log"
    times: dict[str, list[float]] = {"hard": [], "soft": []}
    gaps: list[float] = []
    samples = unread = same = 0
    with launch(shlex.split(args.server_args), log=log, start_timeout_s=900) as srv:
        client = httpx.Client(base_url=srv.url, timeout=3600)
        info = client.get("/v1/info").json()
        for votes in ("hard", "soft"):  # warm-up: compile, caches
            call(client, {"items": items(pairs[:1], args.k, args.max_tokens, votes, 99_999)})
        before = counter(client.get("/metrics").text, PASSES)
        for round_no in range(args.repeats):
            answers = {}
            for votes in ("hard", "soft"):
                seconds, answers[votes] = call(client, {"items": items(pairs, args.k, args.max_tokens, votes,
                                                                       1000 * round_no)})  # fmt: skip
                times[votes].append(seconds)
                print(f"round {round_no} {votes}: {seconds:.1f} s", flush=True)
            for hard, soft in zip(answers["hard"]["items"], answers["soft"]["items"], strict=True):
                for h, s in zip(hard["samples"], soft["samples"], strict=True):
                    samples += 1
                    same += h["critique"] == s["critique"] and h["scores"] == s["scores"]
                    if s["status"] == "no_soft_score":
                        unread += 1
                    elif s.get("soft_scores") is not None:  # beside the hard scores that sample wrote
                        gaps += [abs(a - b) for a, b in zip(s["soft_scores"], s["scores"], strict=True)]
        passes = counter(client.get("/metrics").text, PASSES) - before
    hard_s, soft_s = statistics.mean(times["hard"]), statistics.mean(times["soft"])
    print(json.dumps({
        "model": info["model"], "engine": info["engine_version"], "judge": info["judge"]["name"],
        "pairs": len(pairs), "k": args.k, "repeats": args.repeats,
        "hard_s": [round(t, 2) for t in times["hard"]], "soft_s": [round(t, 2) for t in times["soft"]],
        "soft_over_hard": round(soft_s / hard_s, 3),
        "scoring_passes_per_soft_call": passes / args.repeats,
        "soft_samples": samples, "no_soft_score": unread, "same_sample_as_hard": same,
        "mean_abs_soft_minus_hard": round(statistics.mean(gaps), 3) if gaps else None,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
