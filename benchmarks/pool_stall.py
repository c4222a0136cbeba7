"""How long one large pairwise call holds the event loop (every other call, health checks included, waits).

One ``/v1/score`` call of ``--responses`` responses under ``skywork-critic`` with ``--pairing all_pairs``
(m(m-1)/2 pairs: 2016 for 64 responses) and ``--k`` samples each, on the real app in-process with the
fake engine (a deterministic A/B judge, longer wins) batching ``--max-num-seqs`` sequences with a
``--delay`` per batch, as a GPU engine returns work in waves. A 10 ms ticker runs beside the call; the
longest gap between its ticks past 10 ms is the stall, reported with the CPU seconds this process spent
in it (what the stall costs on an idle machine; the wall figure grows with the machine's load).

    python benchmarks/pool_stall.py                             # 64 responses, k=32, adaptive off
    python benchmarks/pool_stall.py --adaptive rank             # adaptive k's rank rule, in rounds

The fake judge's own work (writing 64,512 verdicts) is part of the figure; a real engine does it on the GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.engines.fake import FakeEngine  # noqa: E402
from server.pipeline.judges import get_judge  # noqa: E402
from server.pipeline.judges.testing import judge_script  # noqa: E402
from tests.api.conftest import running_app  # noqa: E402


async def measure(args: argparse.Namespace) -> dict[str, float]:
    engine = FakeEngine(
        judge_script(get_judge("skywork-critic"), len), max_num_seqs=args.max_num_seqs, delay=args.delay
    )
    settings = {"judge": "skywork-critic", "pairing": "all_pairs", "max_group_size": args.responses, "max_k": args.k}
    body = {"query": "Q", "responses": [f"r{i}" + "x" * i for i in range(args.responses)], "k": args.k}
    if args.adaptive != "off":
        body["adaptive"] = args.adaptive
    worst = {"stall_s": 0.0, "stall_cpu_s": 0.0}
    done = False

    async def ticker() -> None:
        while not done:
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.sleep(0.01)
            stall = time.perf_counter() - wall - 0.01
            if stall > worst["stall_s"]:
                worst.update(stall_s=stall, stall_cpu_s=time.process_time() - cpu)

    async with running_app(engine, **settings) as client:
        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        reply = await client.post("/v1/score", json=body, timeout=None)
        wall = time.perf_counter() - started
        done = True
        await tick
    if reply.status_code != 200:
        raise SystemExit(f"the call failed: {reply.status_code} {reply.text[:200]}")
    return {**worst, "call_s": wall, "k_used": reply.json()["k_used"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=64)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--adaptive", choices=["off", "rank", "stderr"], default="off")
    parser.add_argument("--max-num-seqs", type=int, default=256, help="sequences the fake engine batches at once")
    parser.add_argument("--delay", type=float, default=0.001, help="seconds per fake engine batch")
    result = asyncio.run(measure(parser.parse_args()))
    print(
        " ".join(
            f"{name}={value:.2f}" if isinstance(value, float) else f"{name}={value}" for name, value in result.items()
        )
    )


if __name__ == "__main__":
    main()
