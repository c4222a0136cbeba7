"""Format guidance candidates, side by side on one engine: what each costs and how often it parses.

The same GRM requests (the server's own plan: prompts, orders, n, seeds) run straight on AsyncLLM
once per candidate, one after another, with the prefix cache emptied in between:

* ``unguided``  — no structured output: the model writes what it likes;
* ``bounded``   — the single-pass regex with bounded lines (``[^\\n]{1,N}``, sized so a sample
  always fits the budget): what grm-serve sent before issue #13;
* ``two-pass``  — unbounded lines within the budget less a small reserve, then a short guided
  continuation for every sample the budget cut before its scores (what grm-serve sends now).

``--backends xgrammar,guidance`` repeats the guided candidates on vLLM's llguidance backend (one
engine per backend). Every sample is parsed with grm-serve's parser.

    python benchmarks/guidance.py --items 8 --k 4 --max-tokens 256
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import count_votes, direct_generate, load_pairs, pair_specs  # noqa: E402
from server.config import Settings  # noqa: E402
from server.engines import create_engine  # noqa: E402
from server.engines.vllm import VLLMEngine, set_cpu_environment  # noqa: E402
from server.pipeline.judges import DeepSeekGRM  # noqa: E402
from server.pipeline.parsing import guidance_regex  # noqa: E402
from server.pipeline.prompts import get_template  # noqa: E402
from server.pipeline.scoring import Planned, Scorer, ScoreSpec, generate_planned  # noqa: E402

CANDIDATES = ("unguided", "bounded", "two-pass")


def candidate_plan(plan: list[Planned], candidate: str, max_tokens: int) -> list[Planned]:
    """The server's two-pass plan rewritten as another candidate (same prompts, orders, n, seeds)."""
    out = []
    for p in plan:
        request = dataclasses.replace(p.request, request_id=f"{candidate}-{p.request.request_id}")
        if candidate != "two-pass":
            regex = guidance_regex(len(p.members), max_tokens) if candidate == "bounded" else None
            request = dataclasses.replace(request, max_tokens=max_tokens, guide_regex=regex)
        out.append(dataclasses.replace(p, request=request, continue_cut=candidate == "two-pass" and p.continue_cut))
    return out


async def run_backend(
    backend: str, specs: list[ScoreSpec], candidates: list[str], args: argparse.Namespace
) -> list[dict]:
    from vllm.platforms import current_platform
    from vllm.v1.engine.async_llm import AsyncLLM

    settings = Settings()
    on_cpu = current_platform.is_cpu()
    if on_cpu:
        set_cpu_environment()
    kwargs = {**settings.engine_kwargs(), "structured_outputs_config": {"backend": backend}}
    wrapper = create_engine("vllm", model=settings.model, cache_dir=settings.cache_dir, engine_kwargs=kwargs)
    assert isinstance(wrapper, VLLMEngine)
    llm = AsyncLLM.from_engine_args(wrapper._engine_args(on_cpu))
    tokenizer = llm.get_tokenizer()
    judge = DeepSeekGRM(template=get_template(settings.template))
    scorer = Scorer(
        judge,
        generate=wrapper.generate,
        max_group_size=4,
        format_guidance=True,
    )
    plan = [p for i, s in enumerate(specs) for p in scorer.plan(s, f"i{i}")]

    generate = direct_generate(llm, tokenizer)

    rows = []
    for candidate in candidates:
        if backend != "xgrammar" and candidate == "unguided":
            continue  # the same work on every backend
        await llm.reset_prefix_cache()
        todo = candidate_plan(plan, candidate, args.max_tokens)
        start = time.perf_counter()
        done = await asyncio.gather(*(generate_planned(generate, p) for p in todo))
        seconds = time.perf_counter() - start
        samples = parsed = votes = tokens = continued = 0
        for p, g in zip(todo, done, strict=True):
            ok, valid = count_votes([c.text for c in g.completions], len(p.members))
            samples, parsed, votes = samples + len(g.completions), parsed + ok, votes + valid
            tokens += sum(c.num_tokens for c in g.completions)
            continued += sum(g.continued)
        rows.append(
            {
                "backend": backend,
                "candidate": candidate,
                "seconds": seconds,
                "samples": samples,
                "parsed": parsed,
                "continued": continued,
                "generation_tokens": tokens,
                "valid_votes": votes,
            }
        )
        print(f"{backend} {candidate}: {seconds:.1f} s, {parsed}/{samples} parsed", file=sys.stderr, flush=True)
    llm.shutdown()
    del generate, llm  # before interpreter teardown, where AsyncLLM.__del__ would fail
    return rows


def table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["backend"] == "xgrammar" and r["candidate"] == "bounded"), None)
    lines = [
        "| backend | candidate | seconds | samples | parse | continued | gen tokens | gen tok/s | valid votes/s "
        "| votes/s vs bounded |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vps = r["valid_votes"] / r["seconds"]
        ratio = f"{vps / (base['valid_votes'] / base['seconds']):.2f}" if base and base["valid_votes"] else ""
        lines.append(
            f"| {r['backend']} | {r['candidate']} | {r['seconds']:.1f} | {r['samples']} | {r['parsed']}/{r['samples']} "
            f"| {r['continued']} | {r['generation_tokens']} | {r['generation_tokens'] / r['seconds']:.1f} | {vps:.2f} "
            f"| {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "rmb-dev.jsonl")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--backends", default="xgrammar", help="comma-separated: xgrammar, guidance")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    candidates = [c for c in args.candidates.split(",") if c]
    unknown = set(candidates) - set(CANDIDATES)
    if unknown:
        parser.error(f"unknown candidate(s) {sorted(unknown)}; choose from {', '.join(CANDIDATES)}")
    specs = pair_specs(load_pairs(args.data, args.items), args.k, args.temperature, args.max_tokens)
    rows = []
    for backend in args.backends.split(","):
        rows += asyncio.run(run_backend(backend, specs, candidates, args))
    print(f"\nitems={len(specs)} k={args.k} max_tokens={args.max_tokens} temperature={args.temperature}")
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
