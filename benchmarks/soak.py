"""Soak test of ``grm-serve --engine fake``: many calls, one server, its memory sampled throughout.

Starts ``grm-serve --engine fake`` on a free loopback port (``tests.launcher.launch``), waits for
/health/ready, times single /v1/score calls one after another (the fake engine's own loop: one call
at a time, nothing queued), then sends --calls /v1/score calls from --concurrency keep-alive httpx
clients while sampling the resident memory of the server's process tree every --sample-every seconds.
It prints the outcomes by status, calls/s, latency, and RSS at the start, after warm-up (the first
--warmup fraction of the calls), at its peak and at the end, with the growth from warm-up to the end
in MiB and per 1,000 calls (end minus warm-up, and a least-squares slope over the samples after
warm-up). Loopback only; every loop is bounded; the server is stopped at the end.

    python benchmarks/soak.py --calls 100000 --concurrency 16 --distinct
    python benchmarks/soak.py --calls 2000 --json soak.json --server-args "--max-group-size 2"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.launcher import ServerProcess, launch  # noqa: E402

MIB = 2**20
# Two responses of different lengths (the fake engine's default script prefers the longer one).
RESPONSES = (
    "Paris is the capital of France. It has been the seat of the French government for centuries, and it is "
    "also the country's largest city.",
    "It is Paris.",
)


@dataclass
class Sample:
    t_s: float  # since the soak began
    calls_done: int
    rss_bytes: int


@dataclass
class Soak:
    calls: int
    concurrency: int
    k: int
    distinct: bool
    return_samples: bool
    server_args: str
    single_call_ms: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    calls_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    warmup_calls: int = 0
    rss_start_bytes: int = 0
    rss_warmup_bytes: int = 0
    rss_peak_bytes: int = 0
    rss_end_bytes: int = 0
    growth_mib: float = 0.0
    growth_kib_per_1000_calls: float = 0.0
    slope_kib_per_1000_calls: float | None = None
    engine_requests_total: int | None = None
    dedup_cache_entries: int | None = None
    dedup_cache_bytes: int | None = None
    samples: list[Sample] = field(default_factory=list)


def body(i: int, args: argparse.Namespace, distinct: bool) -> dict[str, Any]:
    """Call ``i``'s request: a distinct call differs from every other (its seed and its query), so it is
    not deduplicated; the others are all the same body."""
    query = f"What is the capital of France? (soak call {i})" if distinct else "What is the capital of France?"
    out: dict[str, Any] = {"query": query, "responses": list(RESPONSES), "k": args.k}
    if distinct:
        out["seed"] = i
    if args.return_samples:
        out["return_samples"] = True
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x (None for fewer than two distinct x)."""
    if len({x for x, _ in points}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def outcome_of(r: httpx.Response) -> str:
    return "ok" if r.status_code == 200 else str(r.status_code)


async def single_calls(url: str, args: argparse.Namespace, n: int) -> list[float]:
    """Seconds of ``n`` distinct calls (each one reaches the engine) made one after another on one
    connection, after one untimed call; numbered after the soak's calls so none repeats one of them."""
    took: list[float] = []
    async with httpx.AsyncClient(timeout=args.timeout) as http:
        for i in range(n + 1):
            start = time.perf_counter()
            r = await http.post(f"{url}/v1/score", json=body(args.calls + i, args, True))
            if r.status_code != 200:
                raise RuntimeError(f"single call failed: {r.status_code} {r.text[:500]}")
            if i:
                took.append(time.perf_counter() - start)
    return took


async def drive(srv: ServerProcess, args: argparse.Namespace, soak: Soak) -> list[float]:
    """Send the calls, sample RSS; fills ``soak`` and returns the latencies (s)."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    next_call = 0
    done = 0
    soak.warmup_calls = max(1, round(args.calls * args.warmup))
    t0 = time.perf_counter()

    def sample() -> None:
        soak.samples.append(Sample(round(time.perf_counter() - t0, 3), done, srv.rss_bytes()))

    async def client() -> None:
        nonlocal next_call, done
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(timeout=args.timeout, limits=limits) as http:
            while next_call < args.calls:
                i = next_call
                next_call += 1
                start = time.perf_counter()
                try:
                    r = await http.post(f"{srv.url}/v1/score", json=body(i, args, args.distinct))
                    outcome = outcome_of(r)
                except httpx.HTTPError as exc:
                    outcome = f"transport {type(exc).__name__}"
                latencies.append(time.perf_counter() - start)
                outcomes[outcome] += 1
                done += 1
                if done == soak.warmup_calls:
                    soak.rss_warmup_bytes = srv.rss_bytes()

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(args.sample_every)

    sampling = asyncio.create_task(sampler())
    try:
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
    finally:
        sampling.cancel()
    soak.wall_s = time.perf_counter() - t0
    sample()
    soak.outcomes = dict(outcomes.most_common())
    return latencies


def metric_value(text: str, pattern: str) -> int | None:
    """The value of the first /metrics line matching ``pattern`` (a regex of the name), or None."""
    m = re.search(rf"^{pattern}(?:\{{\}})? (\S+)$", text, re.M)
    return round(float(m.group(1))) if m else None


def run(args: argparse.Namespace) -> Soak:
    soak = Soak(args.calls, args.concurrency, args.k, args.distinct, args.return_samples, args.server_args)
    log = Path(tempfile.mkdtemp(prefix="grm-soak-")) / "server.log"
    with launch(["--engine", "fake", "--log-level", "warning", *args.server_args.split()], log=log) as srv:
        soak.rss_start_bytes = srv.rss_bytes()
        single = asyncio.run(single_calls(srv.url, args, args.single_calls))
        soak.single_call_ms = {
            "p50": 1000 * percentile(single, 0.5),
            "min": 1000 * min(single),
            "max": 1000 * max(single),
        }
        latencies = asyncio.run(drive(srv, args, soak))
        soak.rss_end_bytes = srv.rss_bytes()
        metrics = httpx.get(f"{srv.url}/metrics", timeout=30).text
        soak.engine_requests_total = metric_value(metrics, "fake_engine[:_]requests_total")
        soak.dedup_cache_entries = metric_value(metrics, "grm_dedup_cache_entries")
        soak.dedup_cache_bytes = metric_value(metrics, "grm_dedup_cache_bytes")
    soak.samples.append(Sample(soak.samples[-1].t_s, args.calls, soak.rss_end_bytes))
    soak.rss_peak_bytes = max(s.rss_bytes for s in soak.samples)
    soak.calls_per_s = args.calls / soak.wall_s
    soak.latency_ms = {
        "p50": 1000 * percentile(latencies, 0.5),
        "p99": 1000 * percentile(latencies, 0.99),
        "max": 1000 * max(latencies),
    }
    after = args.calls - soak.warmup_calls
    soak.growth_mib = (soak.rss_end_bytes - soak.rss_warmup_bytes) / MIB
    soak.growth_kib_per_1000_calls = 1024 * soak.growth_mib / (after / 1000) if after else 0.0
    fit = slope([(s.calls_done, s.rss_bytes) for s in soak.samples if s.calls_done >= soak.warmup_calls])
    soak.slope_kib_per_1000_calls = None if fit is None else fit * 1000 / 1024
    return soak


def report(soak: Soak) -> str:
    ok = soak.outcomes.get("ok", 0)
    failed = {k: v for k, v in soak.outcomes.items() if k != "ok"}
    fit = "n/a" if soak.slope_kib_per_1000_calls is None else f"{soak.slope_kib_per_1000_calls:+.1f} KiB"
    lines = [
        f"soak: calls={soak.calls} concurrency={soak.concurrency} k={soak.k} distinct={soak.distinct} "
        f"return_samples={soak.return_samples} server_args={soak.server_args!r}",
        f"single call (one at a time): p50 {soak.single_call_ms['p50']:.2f} ms, "
        f"min {soak.single_call_ms['min']:.2f} ms, max {soak.single_call_ms['max']:.2f} ms",
        f"calls ok {ok}, failed {sum(failed.values())}"
        + (" (" + ", ".join(f"{k} x{v}" for k, v in failed.items()) + ")" if failed else ""),
        f"wall time {soak.wall_s:.1f} s; {soak.calls_per_s:.1f} calls/s",
        f"latency p50 {soak.latency_ms['p50']:.1f} ms, p99 {soak.latency_ms['p99']:.1f} ms, "
        f"max {soak.latency_ms['max']:.1f} ms",
        f"engine generate calls (fake_engine:requests): {soak.engine_requests_total}",
        f"dedup cache at the end: {soak.dedup_cache_entries} results, "
        f"{(soak.dedup_cache_bytes or 0) / MIB:.2f} MiB estimated",
        f"RSS (server process tree): start {soak.rss_start_bytes / MIB:.1f} MiB, "
        f"after warm-up ({soak.warmup_calls} calls) {soak.rss_warmup_bytes / MIB:.1f} MiB, "
        f"peak {soak.rss_peak_bytes / MIB:.1f} MiB, end {soak.rss_end_bytes / MIB:.1f} MiB",
        f"growth warm-up to end: {soak.growth_mib:+.2f} MiB, {soak.growth_kib_per_1000_calls:+.1f} KiB per 1,000 calls "
        f"(least-squares slope after warm-up: {fit} per 1,000 calls, {len(soak.samples)} samples)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="calls to send (default 100,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent keep-alive clients (default 16)")
    parser.add_argument("--k", type=int, default=2, help="samples per call (default 2)")
    parser.add_argument("--distinct", action="store_true", help="every call a different body: nothing deduplicated")
    parser.add_argument("--return-samples", action="store_true", help="ask for the samples in every answer")
    parser.add_argument("--server-args", default="", help="extra grm-serve flags, e.g. '--max-group-size 2'")
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds between RSS samples (default 2)")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of the calls that is warm-up (default 0.1)")
    parser.add_argument("--single-calls", type=int, default=20, help="single calls timed one at a time first")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per call before it counts as failed")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures and samples here")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.concurrency < 1 or args.single_calls < 1 or not 0 < args.warmup < 1:
        parser.error("--calls, --concurrency and --single-calls must be at least 1, --warmup within (0, 1)")

    soak = run(args)
    print(report(soak), flush=True)
    if args.json:
        args.json.write_text(json.dumps(asdict(soak), indent=1) + "\n")
    return 0 if soak.outcomes.get("ok", 0) == soak.calls else 1


if __name__ == "__main__":
    sys.exit(main())
