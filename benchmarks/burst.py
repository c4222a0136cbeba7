"""One training step's burst of reward calls, through each trainer's own client code.

An RL step finishes hundreds or thousands of rollouts within seconds and each asks for its reward at
once. This sends ``--rollouts`` rollouts (``--per-prompt`` per prompt, ChatML, one rollout per call)
at once to a ``grm-serve --engine fake`` process whose engine behaves like a GPU under load: each
request takes ``--latency`` seconds once it runs and at most ``--max-num-seqs`` sequences run at once
(flat latency until the batch is full, then linear). The defaults stand for a 27B judge on one H100
(docs/benchmarks.md: a 26B-shaped model generated ~13 tokens/s per sequence at 192 sequences, so a
256-token sample takes ~20 s).

Clients, each on a fresh server:

* ``openrlhf``: OpenRLHF 0.11.2's own ``SingleTurnAgentExecutor._fetch_rewards_via_http`` (one row per
  call to ``/get_reward``; aiohttp, 180 s per try, 5 tries 1 s apart, then the reward stays None);
* ``slime``: slime's ``remote_rm`` (``slime/rollout/rm_hub/__init__.py``) reproduced call for call
  (slime is not on the package index): ``{"prompt", "response", "label"}`` to ``/v1/reward`` over one
  shared aiohttp session of 64 connections, 120 s per try (waiting for a connection included), 10
  tries with backoff ``min(2**attempt, 30) + U[0, 1)`` s;
* ``grm-client``: ``AsyncGRMClient.score`` per rollout (``/v1/score``; keys, retries of 429 and 504).

Each burst runs as tenant ``burst-key``; ``--probe-at`` seconds in, a second tenant (``probe-key``)
sends one ``/v1/score`` call of two responses (k samples, one GRM group) and its latency is timed.
Printed per client: rewards lost, wall time, the throughput bound (the burst's samples at
``max_num_seqs / latency`` samples per second), wall / bound, the probe's latency, 429s by reason,
retries answered by a running or finished job, and the mean GRM group size.

    python benchmarks/burst.py                                   # 1,024 rollouts per client, ~13 min
    python benchmarks/burst.py --rollouts 64 --latency 1 --max-num-seqs 16 --k 2   # seconds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grm_client import AsyncGRMClient
from tests.launcher import launch
from tests.slime_client import remote_rm, slime_session

BURST_KEY, PROBE_KEY = "burst-key", "probe-key"
CLIENTS = ("openrlhf", "slime", "grm-client")
GROUP_SIZE = 4  # grm-serve's default --max-group-size


@dataclass
class Rollout:
    prompt: str  # ChatML, as the policy saw it
    question: str
    response: str  # the rollout's text, without its end-of-turn token


@dataclass
class Outcome:
    client: str
    rollouts: int
    lost: int
    wall_s: float
    bound_s: float
    probe_s: float | None
    rejected: dict[str, float] = field(default_factory=dict)
    deduplicated: dict[str, float] = field(default_factory=dict)
    mean_group_size: float | None = None
    engine_requests: float | None = None
    samples: float | None = None  # GRM samples generated (the probe's included)

    @property
    def ratio(self) -> float:
        return self.wall_s / self.bound_s


def make_rollouts(n: int, per_prompt: int) -> list[Rollout]:
    out = []
    for i in range(n):
        p, j = divmod(i, per_prompt)
        question = f"Question {p}: name a colour and say why."
        prompt = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
        out.append(Rollout(prompt, question, f"Rollout {j} of prompt {p}: " + "blue, like the sky " * (j + 1)))
    return out


def bound_s(rollouts: int, per_prompt: int, k: int, latency: float, max_num_seqs: int) -> float:
    """The burst's engine work over the engine's throughput: no scheduler can finish sooner."""
    prompts = math.ceil(rollouts / per_prompt)
    samples = prompts * k * math.ceil(per_prompt / GROUP_SIZE)
    return samples * latency / max_num_seqs


# ---- the clients ---------------------------------------------------------------------------------


async def openrlhf_burst(url: str, rollouts: list[Rollout]) -> list[float | None]:
    from openrlhf.utils.agent import SingleTurnAgentExecutor  # imported before the clock starts (run_one)

    executor = SingleTurnAgentExecutor(remote_rm_url=f"{url}/get_reward?api_key={BURST_KEY}")

    async def one(r: Rollout) -> float | None:
        query = r.prompt + r.response + "<|im_end|>"  # decoded with special tokens, as OpenRLHF does
        try:  # what SingleTurnAgentExecutor.execute does around the call
            (info,) = await executor._fetch_rewards_via_http([query], [r.prompt], [None])
        except Exception:
            return None
        rewards = info.get("rewards") if info else None
        return rewards[0] if rewards else None

    return list(await asyncio.gather(*(one(r) for r in rollouts)))


async def slime_burst(url: str, rollouts: list[Rollout]) -> list[float | None]:
    async with slime_session() as session:

        async def one(r: Rollout) -> float | None:
            payload = {"prompt": r.prompt, "response": r.response, "label": None}
            try:
                answer = await remote_rm(session, f"{url}/v1/reward?api_key={BURST_KEY}", payload)
            except Exception:
                return None
            return answer["reward"]  # --reward-key reward

        return list(await asyncio.gather(*(one(r) for r in rollouts)))


async def grm_client_burst(url: str, rollouts: list[Rollout]) -> list[float | None]:
    async with AsyncGRMClient(base_url=url, api_key=BURST_KEY) as client:

        async def one(r: Rollout) -> float | None:
            try:
                result = await client.score([{"role": "user", "content": r.question}], [r.response])
            except Exception:
                return None
            return result.responses[0].mean_score

        return list(await asyncio.gather(*(one(r) for r in rollouts)))


BURSTS = {"openrlhf": openrlhf_burst, "slime": slime_burst, "grm-client": grm_client_burst}


async def probe(url: str, at_s: float, k: int) -> float | None:
    """A second tenant's one call during the burst: seconds until its answer (None if it failed)."""
    await asyncio.sleep(at_s)
    body = {"query": "Is the sea blue?", "responses": ["Yes, mostly.", "No."], "k": k}
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=900) as client:
        r = await client.post(f"{url}/v1/score", json=body, headers={"authorization": f"Bearer {PROBE_KEY}"})
    return time.perf_counter() - started if r.status_code == 200 else None


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def run_one(client: str, args: argparse.Namespace) -> Outcome:
    rollouts = make_rollouts(args.rollouts, args.per_prompt)
    if client == "openrlhf":
        import logging

        import openrlhf.utils.agent  # seconds to import: not part of the burst

        # It logs every failed try at INFO (its 180 s timeouts included); lost rewards are counted here.
        openrlhf.utils.agent.logger.setLevel(logging.WARNING)
    server_args = ["--engine", "fake", "--delay", str(args.latency), "--max-num-seqs", str(args.max_num_seqs)]
    server_args += ["--k", str(args.k), "--log-level", "warning", *args.server_args.split()]
    log = Path(tempfile.mkdtemp(prefix="grm-burst-")) / "server.log"
    env = {"GRM_API_KEYS": f"{BURST_KEY},{PROBE_KEY}"}
    with launch(server_args, log=log, env=env, start_timeout_s=60) as srv:

        async def both() -> tuple[list[float | None], float | None, float]:
            started = time.perf_counter()
            burst = asyncio.create_task(BURSTS[client](srv.url, rollouts))
            probed = asyncio.create_task(probe(srv.url, args.probe_at, args.k))
            rewards = await burst
            wall = time.perf_counter() - started
            return rewards, await probed, wall

        rewards, probe_s, wall = asyncio.run(both())
        text = httpx.get(f"{srv.url}/metrics", timeout=30).text
    groups = metric(text, "grm_group_size_count")
    return Outcome(
        client=client,
        rollouts=len(rollouts),
        lost=sum(r is None for r in rewards),
        wall_s=wall,
        bound_s=bound_s(args.rollouts, args.per_prompt, args.k, args.latency, args.max_num_seqs),
        probe_s=probe_s,
        rejected={r: metric(text, "grm_rejected_requests_total", reason=r) for r in ("deadline", "calls")},
        deduplicated={h: metric(text, "grm_deduplicated_requests_total", how=h) for h in ("inflight", "cached")},
        mean_group_size=metric(text, "grm_group_size_sum") / groups if groups else None,
        engine_requests=metric(text, "fake_engine_requests_total"),
        samples=metric(text, "grm_samples_total", status="parsed")
        + metric(text, "grm_samples_total", status="unparseable"),
    )


def report(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    lines = [
        f"burst: {args.rollouts} rollouts ({args.per_prompt} per prompt, one per call), k={args.k}, "
        f"engine latency {args.latency:g} s flat up to {args.max_num_seqs} sequences; probe at {args.probe_at:g} s",
        "| client | rewards lost | wall s | bound s | wall / bound | probe s | 429 deadline / calls "
        "| retries joined (inflight / cached) | mean group | samples |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        probe_s = "failed" if o.probe_s is None else f"{o.probe_s:.1f}"
        group = "n/a" if o.mean_group_size is None else f"{o.mean_group_size:.2f}"
        lines.append(
            f"| {o.client} | {o.lost} of {o.rollouts} | {o.wall_s:.1f} | {o.bound_s:.1f} | {o.ratio:.3f} | {probe_s} "
            f"| {o.rejected['deadline']:.0f} / {o.rejected['calls']:.0f} "
            f"| {o.deduplicated['inflight']:.0f} / {o.deduplicated['cached']:.0f} | {group} | {o.samples:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=1024)
    parser.add_argument("--per-prompt", type=int, default=8, help="rollouts per prompt (a GRPO group)")
    parser.add_argument("--k", type=int, default=8, help="GRM samples per group (the server's --k)")
    parser.add_argument("--latency", type=float, default=20.0, help="seconds an engine request takes once it runs")
    parser.add_argument("--max-num-seqs", type=int, default=192, help="sequences the engine runs at once")
    parser.add_argument("--probe-at", type=float, default=10.0, help="when the second tenant's call goes out")
    parser.add_argument("--clients", default=",".join(CLIENTS), help=f"comma-separated, of {', '.join(CLIENTS)}")
    parser.add_argument("--server-args", default="", help="extra grm-serve flags")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    chosen = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(CLIENTS))
    if unknown:
        parser.error(f"unknown client(s): {', '.join(unknown)}")
    outcomes = []
    for client in chosen:
        outcomes.append(run_one(client, args))
        print(f"{client}: done in {outcomes[-1].wall_s:.1f} s, {outcomes[-1].lost} rewards lost", flush=True)
    print(report(outcomes, args))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) | {"ratio": o.ratio} for o in outcomes], indent=2))
    return 0 if all(o.lost == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
