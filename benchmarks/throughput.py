"""Tokens/s of direct AsyncLLM generation versus the same work through grm-serve's /v1/score.

Both sides run the same engine arguments on the same GRM requests: the prompts, orders, n and
seeds come from the server's own planner, so the two runs generate the same samples and the ratio
measures what the server adds (HTTP, validation, prompt rendering, parsing, voting). The phases
run one after the other in one invocation, never side by side, so they do not share cores.

    python benchmarks/throughput.py --items 12 --k 8 --max-tokens 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.config import Settings  # noqa: E402
from server.domain import Message  # noqa: E402
from server.engines import create_engine  # noqa: E402
from server.engines.vllm import VLLMEngine, encode_chat, set_cpu_environment, to_sampling_params  # noqa: E402
from server.prompts import get_template  # noqa: E402
from server.scoring import Scorer, ScoreSpec  # noqa: E402


def load_items(path: Path, n: int) -> list[dict]:
    pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:n]
    return [{"messages": p["messages"], "responses": [p["chosen"], p["rejected"]]} for p in pairs]


def specs_for(items: list[dict], args: argparse.Namespace) -> list[ScoreSpec]:
    return [
        ScoreSpec(
            messages=tuple(Message(m["role"], m["content"]) for m in it["messages"]),
            responses=tuple(it["responses"]),
            k=args.k,
            temperature=args.temperature,
            top_p=1.0,
            max_tokens=args.max_tokens,
            seed=i,
        )
        for i, it in enumerate(items)
    ]


async def direct(items: list[dict], args: argparse.Namespace, settings: Settings) -> tuple[int, float]:
    """Generate the planned requests straight on AsyncLLM; returns (generated tokens, seconds)."""
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
        wrapper,
        get_template(settings.template),
        max_group_size=settings.max_group_size,
        format_guidance=settings.format_guidance,
    )
    plan = [p.request for i, s in enumerate(specs_for(items, args)) for p in scorer.plan(s, f"direct-{i}")]
    prompts = [encode_chat(tokenizer, req.prompt) for req in plan]

    async def one(engine: AsyncLLM, req, ids) -> int:
        params = to_sampling_params(req)
        final = None
        async for out in engine.generate({"prompt_token_ids": ids}, params, req.request_id):
            final = out
        return sum(len(o.token_ids) for o in final.outputs)

    start = time.perf_counter()
    tokens = await asyncio.gather(*(one(llm, r, ids) for r, ids in zip(plan, prompts, strict=True)))
    elapsed = time.perf_counter() - start
    llm.shutdown()
    del llm  # before interpreter teardown, where AsyncLLM.__del__ would fail
    return sum(tokens), elapsed


def through_server(items: list[dict], args: argparse.Namespace) -> tuple[int, float, float]:
    """Start grm-serve, POST the same items; returns (generated tokens, seconds, parse rate)."""
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
        start = time.perf_counter()
        r = httpx.post(f"{srv.url}/v1/score", json=body, timeout=3600)
        elapsed = time.perf_counter() - start
        r.raise_for_status()
    out = r.json()["items"]
    tokens = sum(i["usage"]["generation_tokens"] for i in out)
    parse_rate = sum(i["valid_samples"] for i in out) / sum(i["total_samples"] for i in out)
    return tokens, elapsed, parse_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "smoke.jsonl")
    parser.add_argument("--items", type=int, default=12, help="pairs to score (default 12)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    settings = Settings()  # the same environment the server subprocess reads
    items = load_items(args.data, args.items)

    d_tokens, d_time = asyncio.run(direct(items, args, settings))
    s_tokens, s_time, parse_rate = through_server(items, args)
    d_rate, s_rate = d_tokens / d_time, s_tokens / s_time
    print(
        f"\nmodel={settings.model} items={len(items)} k={args.k} max_tokens={args.max_tokens} "
        f"format_guidance={settings.format_guidance}"
    )
    print(f"{'path':<22}{'gen tokens':>12}{'seconds':>10}{'tokens/s':>11}")
    print(f"{'direct AsyncLLM':<22}{d_tokens:>12}{d_time:>10.1f}{d_rate:>11.1f}")
    print(f"{'grm-serve /v1/score':<22}{s_tokens:>12}{s_time:>10.1f}{s_rate:>11.1f}")
    print(f"ratio (server / direct): {s_rate / d_rate:.3f}   server parse rate: {parse_rate:.1%}")


if __name__ == "__main__":
    main()
