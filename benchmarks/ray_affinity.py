"""Grouping across calls with N Ray Serve replicas: routing by load (Ray's default) vs prompt-affine.

One local Ray cluster runs the deploy/ray app on the fake engine twice, ``affinity=false`` then the
default, with the same settings; each run gets the issue's burst: 8 prompts x 8 rollouts as 64
one-row OpenRLHF ``/get_reward`` calls at once through Ray's HTTP proxy, then 64 prompts x 8 rollouts
for the spread. Printed side by side: the mean ``grm_group_size`` per row (1 replica: 4.0), rows
judged alone, replicas per prompt, and calls per replica.

    python benchmarks/ray_affinity.py --replicas 8 --group-window-s 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RAY_APP = REPO / "deploy" / "ray"
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests.launcher import free_port  # noqa: E402

CHATML = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


def one_row(prompt: int, rollout: int) -> dict:
    text = CHATML.format(q=f"Question {prompt}: what is {prompt} + {prompt}?")
    answer = f"It is {2 * prompt}, rollout {rollout}" + "!" * rollout
    return {"query": [text + answer + "<|im_end|>"], "prompts": [text], "labels": [str(2 * prompt)]}


async def burst(url: str, prompts: int, rollouts: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        calls = [client.post("/get_reward", json=one_row(p, r)) for p in range(prompts) for r in range(rollouts)]
        return list(await asyncio.gather(*calls))


def summary(replies: list[httpx.Response], rollouts: int) -> dict:
    assert all(r.status_code == 200 for r in replies), [r.status_code for r in replies if r.status_code != 200]
    sizes = [r.json()["extra_logs"]["grm_group_size"][0] for r in replies]
    per_prompt: dict[int, set[str]] = {}
    for i, r in enumerate(replies):
        per_prompt.setdefault(i // rollouts, set()).add(r.headers["x-grm-replica"])
    return {
        "mean group": statistics.mean(sizes),
        "rows alone": sum(s == 1 for s in sizes),
        "replicas per prompt (mean)": statistics.mean(len(v) for v in per_prompt.values()),
        "calls per replica": sorted(Counter(r.headers["x-grm-replica"] for r in replies).values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--group-window-s", default="0.05")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds of each fake generation")
    args = parser.parse_args()

    import ray
    from ray import serve

    os.environ["PYTHONPATH"] = os.pathsep.join([str(RAY_APP), str(REPO), os.environ.get("PYTHONPATH", "")])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    sys.path.insert(0, str(RAY_APP))
    import grm_ray_app

    ray.init(num_cpus=args.replicas + 2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    rows = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for affinity in ("false", "true"):
            app = grm_ray_app.build(
                {
                    "replicas": str(args.replicas),
                    "affinity": affinity,
                    "engine": "fake",
                    "k": "2",
                    "group_window_s": args.group_window_s,
                    "extra_engine_args": {"delay": args.delay},
                }
            )
            serve.run(app, name="grm", route_prefix="/")
            url = f"http://127.0.0.1:{port}"
            asyncio.run(burst(url, 2, 1))  # warm the path
            grouped = summary(asyncio.run(burst(url, 8, 8)), 8)
            spread = summary(asyncio.run(burst(url, 64, 8)), 8)
            rows.append((affinity, grouped, spread))
            serve.delete("grm")
    finally:
        serve.shutdown()
        ray.shutdown()
    print(f"{args.replicas} replicas, fake engine ({args.delay} s a generation), group window {args.group_window_s} s")
    print(f"{'routing':<16}{'mean group':>11}{'alone':>7}{'replicas/prompt':>17}  calls per replica (64 x 8)")
    for affinity, g, s in rows:
        name = "prompt-affine" if affinity == "true" else "by load (Ray)"
        print(
            f"{name:<16}{g['mean group']:>11.2f}{g['rows alone']:>7}{g['replicas per prompt (mean)']:>17.2f}"
            f"  {s['calls per replica']}"
        )


if __name__ == "__main__":
    main()
