"""Bounded load test: many concurrent clients, a fixed number of requests, one real server.

Starts grm-serve (the embedded default unless --server-args says otherwise), fires --requests
single-item /v1/score calls from --clients concurrent clients (smoke pairs in turn), and prints
throughput, latency percentiles, outcomes by error type, and the server's resident memory (its
process tree, vLLM's engine core included) before and after.

    python benchmarks/load.py --requests 64 --clients 16 --k 2 --max-tokens 96
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
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.launcher import launch  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def drive(url: str, pairs: list[dict], args: argparse.Namespace) -> tuple[list[float], Counter[str], float]:
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.requests):
        queue.put_nowait(i)

    async def client() -> None:
        async with httpx.AsyncClient(timeout=args.timeout) as http:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                pair = pairs[i % len(pairs)]
                body = {
                    "messages": pair["messages"],
                    "responses": [pair["chosen"], pair["rejected"]],
                    "k": args.k,
                    "max_tokens": args.max_tokens,
                    "seed": i,
                }
                start = time.perf_counter()
                try:
                    r = await http.post(f"{url}/v1/score", json=body)
                    outcome = "ok" if r.status_code == 200 else f"{r.status_code} {r.json()['error']['type']}"
                except httpx.HTTPError as exc:
                    outcome = f"transport {type(exc).__name__}"
                latencies.append(time.perf_counter() - start)
                outcomes[outcome] += 1

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.clients)))
    return latencies, outcomes, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "smoke.jsonl")
    parser.add_argument("--server-args", default="", help="extra grm-serve flags, e.g. '--max-concurrent-requests 8'")
    args = parser.parse_args()
    pairs = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]

    log = Path(tempfile.mkdtemp()) / "server.log"
    with launch(["--log-level", "warning", *args.server_args.split()], log=log) as srv:
        rss_before = srv.rss_bytes()
        latencies, outcomes, elapsed = asyncio.run(drive(srv.url, pairs, args))
        rss_after = srv.rss_bytes()

    ok = outcomes.get("ok", 0)
    print(
        f"\nrequests={args.requests} clients={args.clients} k={args.k} max_tokens={args.max_tokens} "
        f"server_args={args.server_args!r}"
    )
    print(f"wall time {elapsed:.1f} s; throughput {args.requests / elapsed:.2f} req/s ({ok / elapsed:.2f} ok/s)")
    print(
        f"latency p50 {percentile(latencies, 0.5):.1f} s, p99 {percentile(latencies, 0.99):.1f} s, "
        f"mean {statistics.mean(latencies):.1f} s, max {max(latencies):.1f} s"
    )
    print("outcomes: " + ", ".join(f"{k} x{v}" for k, v in outcomes.most_common()))
    print(f"server RSS (process tree): {rss_before / 2**30:.2f} GiB before, {rss_after / 2**30:.2f} GiB after")


if __name__ == "__main__":
    main()
