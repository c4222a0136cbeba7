"""Tokens/s of direct AsyncLLM generation versus the same work through grm-serve's /v1/score.

Both sides run the same engine arguments on the same GRM requests: the prompts, orders, n, seeds
and guidance (with its continuations) come from the server's own planner, so the two runs generate
the same samples and the ratio measures what the server adds (HTTP, validation, prompt rendering,
parsing, the meta RM, voting). The direct side is what a user's own script on AsyncLLM does: it tokenizes each
prompt inside the timed region, as it must. The phases run one after the other in one invocation,
never side by side, so they do not share cores; with ``--rounds 2`` (the default) they run in ABBA
order (direct, server, server, direct) so that drift of the machine's speed during the run, which
moved single runs on this project's 2-core CPU by +-8%, weighs on both sides alike, and the ratio
pools each side's tokens and seconds. Each side also reports the CPU seconds of its
front-end process (everything but vLLM's engine core): on a CPU host that time is taken from the
engine, so it is where a server's overhead shows.

    python benchmarks/throughput.py --items 12 --k 8 --max-tokens 256 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import direct_generate, load_pairs, pair_specs  # noqa: E402
from server.config import Settings  # noqa: E402
from server.engines import create_engine  # noqa: E402
from server.engines.vllm import VLLMEngine, set_cpu_environment  # noqa: E402
from server.pipeline.judges import DeepSeekGRM  # noqa: E402
from server.pipeline.prompts import get_template  # noqa: E402
from server.pipeline.scoring import Scorer, generate_planned  # noqa: E402


async def direct(items: list[dict], args: argparse.Namespace, settings: Settings) -> tuple[int, float, float]:
    """Run the server's plan straight on AsyncLLM; returns (generated tokens, seconds, front-end CPU seconds)."""
    from vllm.platforms import current_platform
    from vllm.v1.engine.async_llm import AsyncLLM

    if current_platform.is_cpu():
        set_cpu_environment()  # the same CPU defaults the server's engine applies
    wrapper = create_engine(
        "vllm", model=settings.model, cache_dir=settings.cache_dir, engine_kwargs=settings.engine_kwargs()
    )
    assert isinstance(wrapper, VLLMEngine)
    llm = AsyncLLM.from_engine_args(wrapper._engine_args(current_platform.is_cpu()))
    tokenizer = llm.get_tokenizer()
    scorer = Scorer(
        DeepSeekGRM(template=get_template(settings.template)),
        generate=wrapper.generate,
        max_group_size=settings.max_group_size,
        format_guidance=settings.format_guidance,
    )
    specs = pair_specs(items, args.k, args.temperature, args.max_tokens)
    plan = [p for i, s in enumerate(specs) for p in scorer.plan(s, f"direct-{i}")]
    generate = direct_generate(llm, tokenizer)

    start, cpu = time.perf_counter(), time.process_time()
    done = await asyncio.gather(*(generate_planned(generate, p) for p in plan))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    llm.shutdown()
    del generate, llm  # before interpreter teardown, where AsyncLLM.__del__ would fail
    return sum(c.num_tokens for g in done for c in g.completions), elapsed, cpu


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (its threads included, its children not)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_server(items: list[dict], args: argparse.Namespace) -> tuple[int, float, float, float]:
    """Start grm-serve, POST the same items; returns (generated tokens, seconds, front-end CPU seconds, parse rate)."""
    import tempfile

    import httpx

    from tests.launcher import launch

    log = Path(tempfile.mkdtemp()) / "server.log"
    with launch(["--log-level", "warning"], log=log) as srv:
        body = {
            "items": [
                {**it, "k": args.k, "temperature": args.temperature, "max_tokens": args.max_tokens, "seed": i}
                for i, it in enumerate(items)
            ]
        }
        start, cpu = time.perf_counter(), process_cpu_seconds(srv.process.pid)
        r = httpx.post(f"{srv.url}/v1/score", json=body, timeout=3600)
        elapsed, cpu = time.perf_counter() - start, process_cpu_seconds(srv.process.pid) - cpu
        r.raise_for_status()
    out = r.json()["items"]
    tokens = sum(i["usage"]["generation_tokens"] for i in out)
    parse_rate = sum(i["valid_samples"] for i in out) / sum(i["total_samples"] for i in out)
    return tokens, elapsed, cpu, parse_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "smoke.jsonl")
    parser.add_argument("--items", type=int, default=12, help="pairs to score (default 12)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="direct+server rounds, ABBA order (default 2)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    settings = Settings()  # the same environment the server subprocess reads
    items = load_pairs(args.data, args.items)

    order = ["direct", "server"] * args.rounds
    for r in range(1, args.rounds, 2):  # ABBA: every second round runs the server first
        order[2 * r], order[2 * r + 1] = "server", "direct"
    rows: list[tuple[str, int, float, float]] = []
    parse_rates = []
    for phase in order:
        if phase == "direct":
            rows.append(("direct AsyncLLM", *asyncio.run(direct(items, args, settings))))
        else:
            tokens, seconds, cpu, parse_rate = through_server(items, args)
            rows.append(("grm-serve /v1/score", tokens, seconds, cpu))
            parse_rates.append(parse_rate)
    print(
        f"\nmodel={settings.model} items={len(items)} k={args.k} max_tokens={args.max_tokens} "
        f"format_guidance={settings.format_guidance} rounds={args.rounds} (order: {', '.join(order)})"
    )
    print(f"{'path':<22}{'gen tokens':>12}{'seconds':>10}{'tokens/s':>11}{'front-end CPU s':>17}")
    for name, tokens, seconds, cpu in rows:
        print(f"{name:<22}{tokens:>12}{seconds:>10.1f}{tokens / seconds:>11.1f}{cpu:>17.1f}")
    pooled = {
        name: sum(t for n, t, _, _ in rows if n == name) / sum(s for n, _, s, _ in rows if n == name)
        for name in ("direct AsyncLLM", "grm-serve /v1/score")
    }
    ratio = pooled["grm-serve /v1/score"] / pooled["direct AsyncLLM"]
    print(f"ratio (server / direct, pooled): {ratio:.3f}   server parse rate: {min(parse_rates):.1%} (lowest round)")


if __name__ == "__main__":
    main()
