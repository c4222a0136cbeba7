"""Chaos soak of admission and the work gate: many calls, a third of them abandoned, then the books.

Runs the real app in-process (``build_app`` on a ``FakeEngine`` with a batch limit, driven over raw
ASGI so a client can hang up at any moment) with a small work gate, so requests wait at it. Calls come
from two tenants (API keys), in a seeded mix: plain and adaptive (``rank``), grouped across calls
(same-prompt single-response calls) and not (seeded); about a third hang up or have a short deadline
(``X-Request-Timeout``), at random moments: before admission, while waiting at the gate, in the
engine, between adaptive rounds, while a batch collects. Some bodies repeat, so dedup jobs are shared
and linger after their callers left. Now and then the engine stalls (its requests take ten times as
long for a moment), so calls admitted on the measured rate miss their deadlines in the middle of work.

Before and after it times fresh calls one at a time; after it, once the lingering jobs have ended,
it checks that the gate is idle (nothing in flight or queued), that no dedup job, grouping batch,
admitted call, work on admission's books or asyncio task is left, and that a fresh call is answered
at its normal latency.
It prints the calls by outcome, the wall time, the gate's state after, the tasks left and the fresh
calls' latency before and after; the exit status is 1 if any check fails (or a call got a 500).

    python benchmarks/chaos_soak.py --calls 20000
    python benchmarks/chaos_soak.py --calls 300 --concurrency 32 --json chaos.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.app import build_app  # noqa: E402
from server.config import Settings  # noqa: E402
from server.engines.fake import FakeEngine  # noqa: E402

KEYS = ("chaos-key-a", "chaos-key-b")
PROMPTS = [f"Which answer is better? (prompt {i})" for i in range(40)]
RESPONSES = ["It is Paris, the capital since the tenth century.", "Paris.", "Lyon, I think.", "No idea."]
STALL_FACTOR, STALL_S = 10, 0.3  # an engine stall: requests take ten times as long, for 0.3 s
SETTLE_S = 30.0  # at most this long for lingering jobs and batches to end after the soak
STATUS = {"200": "ok", "429": "refused", "499": "hung up", "504": "deadline passed", "500": "INTERNAL ERROR"}


@dataclass
class Figures:
    calls: int
    concurrency: int
    capacity: int
    delay_s: float
    seed: int
    kinds: dict[str, int] = field(default_factory=dict)
    fates: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    peak_queued: int = 0  # samples waiting at the gate, at most (sampled every 10 ms)
    peak_inflight: int = 0
    stalls: int = 0
    engine_requests: int = 0
    engine_aborted: int = 0  # engine requests cancelled in the engine (a hang-up or a deadline)
    calls_per_s: float = 0.0
    settle_s: float = 0.0
    gate_after: dict[str, Any] = field(default_factory=dict)
    left_after: dict[str, int] = field(default_factory=dict)
    tasks_left: list[str] = field(default_factory=list)
    fresh_before_ms: dict[str, float] = field(default_factory=dict)
    fresh_after_ms: dict[str, float] = field(default_factory=dict)
    fresh_before: dict[str, int] = field(default_factory=dict)  # the fresh calls' statuses
    fresh_after: dict[str, int] = field(default_factory=dict)
    stuck_at: dict[str, int] | None = None  # where the soak stopped: no call ended for --stuck-after s
    errors_logged: int = 0  # ERROR records the server logged (a failure nobody was left to answer)
    first_errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def scope(path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 4321),
        "server": ("grm.chaos", 80),
    }


async def call(app: Any, body: dict[str, Any], headers: dict[str, str], hang_up_s: float | None) -> str:
    """One ``POST /v1/score`` over raw ASGI; the client hangs up after ``hang_up_s`` (None: never). Returns the status
    the app started its answer with, or ``"hung up"`` if it answered nothing after the hang-up."""
    raw = json.dumps(body).encode()
    gone = asyncio.Event()
    pending = [{"type": "http.request", "body": raw, "more_body": False}]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    all_headers = {"content-type": "application/json", "content-length": str(len(raw)), **headers}
    timer = None if hang_up_s is None else asyncio.get_running_loop().call_later(hang_up_s, gone.set)
    try:
        await app(scope("/v1/score", all_headers), receive, send)
    finally:
        if timer is not None:
            timer.cancel()
    return str(status[0]) if status else "hung up"


def plan(i: int, rng: random.Random, leave_s: float) -> tuple[str, dict[str, Any], dict[str, str], float | None]:
    """Call ``i`` (a ``/v1/score``): its kind, body, headers and when its client hangs up (None: never); a client
    that hangs up does so, and a short deadline passes, within ``leave_s`` seconds."""
    headers = {"authorization": f"Bearer {KEYS[i % 2]}"}
    adaptive = rng.random() < 0.4
    grouped = rng.random() < 0.5
    prompt = rng.choice(PROMPTS)
    if grouped:  # one response, no seed: same-prompt calls of a tenant share a GRM prompt
        body: dict[str, Any] = {"query": prompt, "responses": [rng.choice(RESPONSES)], "k": 4}
    else:  # a seed: never grouped; a small seed range, so some bodies repeat (dedup)
        body = {"query": prompt, "responses": rng.sample(RESPONSES, 2), "k": 4, "seed": rng.randrange(10)}
    if adaptive:
        body.update(k=8, adaptive="rank")
    kind = ("adaptive" if adaptive else "plain") + (" grouped" if grouped else "")
    fate = rng.random()
    hang_up_s = None
    if fate < 1 / 6:
        kind += ", hangs up"
        hang_up_s = rng.uniform(0.0, leave_s)
    elif fate < 1 / 3:
        kind += ", short deadline"
        headers["x-request-timeout"] = f"{rng.uniform(0.001, leave_s):.3f}"
    return kind, body, headers, hang_up_s


def fresh_body(n: int) -> dict[str, Any]:
    return {"query": f"A fresh question, number {n}?", "responses": RESPONSES[:2], "k": 4, "seed": 7}


async def fresh_calls(app: Any, start: int, n: int) -> tuple[dict[str, float], dict[str, int]]:
    """Milliseconds of ``n`` fresh calls (new bodies, a 10 s deadline) one at a time, and their statuses."""
    took, statuses = [], Counter[str]()
    for j in range(n):
        t0 = time.perf_counter()
        headers = {"authorization": f"Bearer {KEYS[0]}", "x-request-timeout": "10"}
        statuses[await call(app, fresh_body(start + j), headers, None)] += 1
        took.append(1000 * (time.perf_counter() - t0))
    return {"p50": statistics.median(took), "min": min(took), "max": max(took)}, dict(statuses)


class _CountErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 3:
            exc = record.exc_info[1] if record.exc_info else None
            self.first.append(f"{record.getMessage()}: {exc!r}" if exc is not None else record.getMessage())


async def soak(args: argparse.Namespace) -> Figures:
    fig = Figures(args.calls, args.concurrency, args.capacity, args.delay, args.seed)
    errors = _CountErrors()
    logging.getLogger().addHandler(errors)
    engine = FakeEngine(delay=args.delay, max_num_seqs=args.capacity)
    settings = Settings(
        engine="fake",
        api_keys=",".join(KEYS),
        group_window_s=args.group_window,
        idempotency_linger_s=args.linger,
        log_level="warning",
    )
    app = build_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        state, service = app.state.grm, app.state.service
        gate, admission, grouper = state.gate, state.admission, service.grouper
        await state.wait_ready(timeout=30)
        fig.fresh_before_ms, fig.fresh_before = await fresh_calls(app, 0, args.fresh_calls)
        baseline = asyncio.all_tasks()
        rng = random.Random(args.seed)
        plans = [plan(i, rng, args.leave_within) for i in range(args.calls)]
        kinds, fates, outcomes = Counter[str](), Counter[str](), Counter[str]()
        next_call = 0

        async def worker() -> None:
            nonlocal next_call
            while next_call < len(plans):
                kind, body, headers, hang_up_s = plans[next_call]
                next_call += 1
                base, _, fate = kind.partition(", ")
                kinds[base] += 1
                fates[fate or "waits for its answer"] += 1
                outcomes[await call(app, body, headers, hang_up_s)] += 1

        async def watch(workers: asyncio.Future[Any]) -> None:
            """Peaks of the gate; and if no call ends for --stuck-after seconds, the soak stops (stuck)."""
            last, since = -1, time.perf_counter()
            while True:
                fig.peak_queued = max(fig.peak_queued, gate.queued)
                fig.peak_inflight = max(fig.peak_inflight, gate.inflight)
                done = sum(outcomes.values())
                if done != last:
                    last, since = done, time.perf_counter()
                elif time.perf_counter() - since > args.stuck_after:
                    fig.stuck_at = {"calls_done": done, "inflight": gate.inflight, "queued": gate.queued}
                    workers.cancel()
                    return
                await asyncio.sleep(0.01)

        async def stalls() -> None:
            stall_rng = random.Random(args.seed + 1)
            while True:
                await asyncio.sleep(stall_rng.expovariate(1 / args.stall_every))
                engine.delay = args.delay * STALL_FACTOR
                fig.stalls += 1
                await asyncio.sleep(STALL_S)
                engine.delay = args.delay

        t0 = time.perf_counter()
        workers = asyncio.gather(*(worker() for _ in range(args.concurrency)))
        background = [asyncio.create_task(watch(workers))]
        if args.stall_every > 0:
            background.append(asyncio.create_task(stalls()))
        with contextlib.suppress(asyncio.CancelledError):
            await workers
        fig.wall_s = time.perf_counter() - t0
        fig.engine_requests, fig.engine_aborted = engine.requests_total, engine.aborted_total
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        engine.delay = args.delay
        fig.calls_per_s = sum(outcomes.values()) / fig.wall_s
        fig.kinds, fig.fates, fig.outcomes = dict(kinds), dict(fates), dict(outcomes.most_common())

        # Jobs whose callers left linger (--idempotency-linger-s) for a retry; wait for them to end.
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < SETTLE_S and (
            service.dedup.running or grouper.collecting or grouper.judging or gate.inflight or gate.queued
        ):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)  # one more beat for the tasks that finish them
        fig.settle_s = time.perf_counter() - t1
        fig.gate_after = {
            "inflight": gate.inflight,
            "queued": gate.queued,
            "waiting_requests": gate.waiting_requests,
            "tenant_inflight": dict(gate.tenant_inflight),
            "capacity": gate.capacity,
        }
        fig.left_after = {
            "dedup_jobs": service.dedup.running,
            "grouping_batches": grouper.collecting + grouper.judging,
            "admitted_calls": admission.calls,
            "admission_books": len(admission.outstanding),  # tenants with admitted work still counted
            "engine_running": len(engine.running),
        }
        fig.tasks_left = sorted(repr(t.get_coro()) for t in asyncio.all_tasks() - baseline - {asyncio.current_task()})
        fig.fresh_after_ms, fig.fresh_after = await fresh_calls(app, args.fresh_calls, args.fresh_calls)
    logging.getLogger().removeHandler(errors)
    fig.errors_logged, fig.first_errors = errors.count, errors.first
    fig.failures = check(fig, args)
    return fig


def check(fig: Figures, args: argparse.Namespace) -> list[str]:
    failures = []
    if fig.stuck_at is not None:
        failures.append(f"no call ended for {args.stuck_after:.0f} s: stopped at {fig.stuck_at}")
    if fig.errors_logged:
        failures.append(f"the server logged {fig.errors_logged} errors, first {fig.first_errors}")
    if fig.outcomes.get("500"):
        failures.append(f"{fig.outcomes['500']} calls answered 500")
    if (fig.gate_after["inflight"], fig.gate_after["queued"], fig.gate_after["waiting_requests"]) != (0, 0, 0):
        failures.append(f"the gate is not idle: {fig.gate_after}")
    if fig.gate_after["tenant_inflight"]:
        failures.append(f"tenants still hold samples: {fig.gate_after['tenant_inflight']}")
    failures += [f"{n} {what} left" for what, n in fig.left_after.items() if n]
    if fig.tasks_left:
        failures.append(f"{len(fig.tasks_left)} asyncio tasks left")
    for when, statuses in (("before", fig.fresh_before), ("after", fig.fresh_after)):
        if set(statuses) != {"200"}:
            failures.append(f"fresh calls {when} answered {statuses}")
    normal = args.latency_factor * fig.fresh_before_ms["p50"] + args.latency_slack_ms
    if fig.fresh_after_ms["p50"] > normal:
        failures.append(f"a fresh call takes {fig.fresh_after_ms['p50']:.1f} ms after, {normal:.1f} ms allowed")
    return failures


def report(fig: Figures) -> str:
    def counts(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))

    before, after = fig.fresh_before_ms, fig.fresh_after_ms
    lines = [
        f"chaos soak: calls={fig.calls} concurrency={fig.concurrency} gate capacity={fig.capacity} samples "
        f"engine delay={fig.delay_s * 1000:.0f} ms seed={fig.seed}",
        f"kinds: {counts(fig.kinds)}",
        f"fates: {counts(fig.fates)}",
        f"outcomes: {counts({f'{k} ({STATUS[k]})' if k in STATUS else k: v for k, v in fig.outcomes.items()})}",
        f"wall time {fig.wall_s:.1f} s; {fig.calls_per_s:.1f} calls/s; lingering work ended {fig.settle_s:.1f} s later",
        f"gate during: at most {fig.peak_inflight} samples in flight, {fig.peak_queued} queued; "
        f"{fig.stalls} engine stalls",
        f"engine requests {fig.engine_requests}, aborted in the engine {fig.engine_aborted}",
        "gate after: in flight {inflight}, queued {queued}, waiting requests {waiting_requests}, "
        "tenants holding {tenant_inflight}, capacity {capacity}".format(**fig.gate_after),
        f"left after: {counts(fig.left_after)}; asyncio tasks left {len(fig.tasks_left)}; "
        f"errors logged {fig.errors_logged}",
        f"fresh call (one at a time): before p50 {before['p50']:.1f} ms (min {before['min']:.1f}, max "
        f"{before['max']:.1f}; {counts(fig.fresh_before)}); after p50 {after['p50']:.1f} ms (min {after['min']:.1f}, "
        f"max {after['max']:.1f}; {counts(fig.fresh_after)})",
        "checks: " + ("all passed" if not fig.failures else "FAILED: " + "; ".join(fig.failures)),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000, help="calls to send (default 20,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight at once (default 16)")
    parser.add_argument("--capacity", type=int, default=12, help="the fake engine's batch limit = gate capacity (12)")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds an engine request takes (default 0.02)")
    parser.add_argument("--group-window", type=float, default=0.02, help="--group-window-s (default 0.02)")
    parser.add_argument("--linger", type=float, default=0.05, help="--idempotency-linger-s (default 0.05)")
    parser.add_argument("--stall-every", type=float, default=2.0, help="mean seconds between engine stalls (0: none)")
    parser.add_argument("--leave-within", type=float, default=0.2, help="hang-ups and short deadlines within (s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the call mix (default 0)")
    parser.add_argument("--fresh-calls", type=int, default=20, help="fresh calls timed before and after")
    parser.add_argument("--latency-factor", type=float, default=2.0, help="fresh p50 after <= factor x before + slack")
    parser.add_argument("--latency-slack-ms", type=float, default=20.0, help="(default 20 ms)")
    parser.add_argument("--stuck-after", type=float, default=10.0, help="stop if no call ends for this long (s)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.concurrency < 1 or args.capacity < 1 or args.fresh_calls < 1:
        parser.error("--calls, --concurrency, --capacity and --fresh-calls must be at least 1")
    fig = asyncio.run(soak(args))
    print(report(fig), flush=True)
    if args.json:
        args.json.write_text(json.dumps(asdict(fig), indent=1) + "\n")
    return 1 if fig.failures else 0


if __name__ == "__main__":
    sys.exit(main())
