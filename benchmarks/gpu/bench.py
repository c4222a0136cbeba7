"""One-GPU benchmark: the same GRM work done four ways, one table with ratios (issue #13).

On the same preference pairs, k samples each, the same generation budget:

* ``direct``   — the server's own plan (prompts, orders, n, seeds, guidance regex) on an in-process
  ``AsyncLLM``, every request at once: the engine's ceiling for this work;
* ``server``   — grm-serve, one single-item ``/v1/score`` call per pair, ``--concurrency`` at a time;
* ``openai``   — vLLM's own OpenAI server and a hand-written client (what a user would write: k chat
  calls per pair, each with its own shuffled order), with grm-serve's guidance regex sent as
  ``structured_outputs``;
* ``openai-unguided`` — the same client without guidance.

Every sample is parsed with grm-serve's parser; "valid votes" counts the scores of parsed samples.
Paths run one after another, never side by side. For a 26-27B-shaped model without its weights,
``--shape 27b`` writes the embedded model's config with Gemma-2-27B widths (hidden 4608, intermediate
36864, 46 layers, 32 heads, 16 KV heads, head_dim 128) and loads it with random weights
(``load_format=dummy``); format guidance keeps its output parseable.

    python benchmarks/gpu/bench.py --pairs 100 --k 8 --max-tokens 256          # embedded model
    python benchmarks/gpu/bench.py --shape 27b --pairs 24 --k 8 --max-tokens 256
    python benchmarks/gpu/bench.py --pairs 2 --k 2 --max-tokens 64 --paths direct,server  # CPU, tiny
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import count_votes, direct_generate, load_pairs, pair_specs  # noqa: E402
from server.pipeline.domain import Message  # noqa: E402
from server.pipeline.judges import DeepSeekGRM  # noqa: E402
from server.pipeline.parsing import guidance_regex  # noqa: E402
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template  # noqa: E402
from server.pipeline.scoring import Planned, Scorer, generate_planned  # noqa: E402

PATHS = ("direct", "server", "openai", "openai-unguided")
SHAPE_27B = {
    "hidden_size": 4608,
    "intermediate_size": 36864,
    "num_hidden_layers": 46,
    "num_attention_heads": 32,
    "num_key_value_heads": 16,
    "head_dim": 128,
}


@dataclass
class Row:
    """One path's totals."""

    path: str
    seconds: float
    samples: int
    parsed: int
    generation_tokens: int
    valid_votes: int

    @property
    def tokens_per_s(self) -> float:
        return self.generation_tokens / self.seconds if self.seconds else 0.0

    @property
    def votes_per_s(self) -> float:
        return self.valid_votes / self.seconds if self.seconds else 0.0


def shaped_model(source: Path, out: Path, shape: dict[str, int]) -> Path:
    """A copy of ``source``'s config and tokenizer with ``shape``'s widths (no weights: load it dummy)."""
    out.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        if f.suffix != ".safetensors" and f.is_file():
            shutil.copy(f, out / f.name)
    config = json.loads((source / "config.json").read_text())
    config.update(shape, tie_word_embeddings=False)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def chat_body(model: str, prompt: str, max_tokens: int, temperature: float, seed: int, regex: str | None) -> dict:
    """The hand-written client's request: one chat call, guided by grm-serve's regex when given."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
    }
    if regex is not None:
        body["structured_outputs"] = {"regex": regex}
    return body


async def hand_written_client(
    url: str, model: str, pairs: list[dict], args: argparse.Namespace, guided: bool, http: httpx.AsyncClient
) -> Row:
    """What a user writes against ``vllm serve``: k chat calls per pair, each with a shuffled order."""
    template = get_template(DEFAULT_TEMPLATE)
    semaphore = asyncio.Semaphore(args.concurrency)
    totals = {"samples": 0, "parsed": 0, "tokens": 0, "votes": 0}

    async def pair_job(i: int, pair: dict) -> None:
        async with semaphore:
            messages = [Message(m["role"], m["content"]) for m in pair["messages"]]
            n = len(pair["responses"])
            regex = guidance_regex(n, args.max_tokens) if guided else None
            rng = random.Random(i)
            calls = []
            for j in range(args.k):
                order = rng.sample(pair["responses"], n)
                prompt = template.render(messages, order)
                body = chat_body(model, prompt, args.max_tokens, args.temperature, i * 1000 + j, regex)
                calls.append(http.post(f"{url}/v1/chat/completions", json=body))
            for r in await asyncio.gather(*calls):
                r.raise_for_status()
                out = r.json()
                text = out["choices"][0]["message"]["content"] or ""
                parsed, votes = count_votes([text], n)
                totals["samples"] += 1
                totals["parsed"] += parsed
                totals["votes"] += votes
                totals["tokens"] += out["usage"]["completion_tokens"]

    start = time.perf_counter()
    await asyncio.gather(*(pair_job(i, p) for i, p in enumerate(pairs)))
    name = "openai" if guided else "openai-unguided"
    return Row(
        name, time.perf_counter() - start, totals["samples"], totals["parsed"], totals["tokens"], totals["votes"]
    )


async def through_server(url: str, pairs: list[dict], args: argparse.Namespace, http: httpx.AsyncClient) -> Row:
    semaphore = asyncio.Semaphore(args.concurrency)
    rows: list[dict] = []

    async def one(i: int, pair: dict) -> None:
        body = {**pair, "k": args.k, "temperature": args.temperature, "max_tokens": args.max_tokens, "seed": i}
        async with semaphore:
            r = await http.post(f"{url}/v1/score", json=body)
        r.raise_for_status()
        rows.append(r.json())

    start = time.perf_counter()
    await asyncio.gather(*(one(i, p) for i, p in enumerate(pairs)))
    seconds = time.perf_counter() - start
    samples = sum(r["total_samples"] for r in rows)
    parsed = sum(r["valid_samples"] for r in rows)
    tokens = sum(r["usage"]["generation_tokens"] for r in rows)
    votes = sum(r["valid_samples"] * len(r["responses"]) for r in rows)
    return Row("server", seconds, samples, parsed, tokens, votes)


async def direct(model: str, pairs: list[dict], args: argparse.Namespace) -> Row:
    """The server's own plan on an in-process AsyncLLM (tokenizing inside the timed region, as a user must)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.platforms import current_platform
    from vllm.v1.engine.async_llm import AsyncLLM

    from server.engines.vllm import VLLMEngine, set_cpu_environment

    on_cpu = current_platform.is_cpu()
    if on_cpu:
        set_cpu_environment()
    wrapper = VLLMEngine(model, model, engine_kwargs=engine_kwargs(args))
    engine_args: AsyncEngineArgs = wrapper._engine_args(on_cpu)
    llm = AsyncLLM.from_engine_args(engine_args)
    tokenizer = llm.get_tokenizer()
    judge = DeepSeekGRM(template=get_template(DEFAULT_TEMPLATE))
    scorer = Scorer(
        judge,
        generate=wrapper.generate,
        max_group_size=4,
        format_guidance=True,
    )
    specs = pair_specs(pairs, args.k, args.temperature, args.max_tokens)
    plan = [pl for i, s in enumerate(specs) for pl in scorer.plan(s, f"direct-{i}")]
    generate = direct_generate(llm, tokenizer)

    async def one(planned: Planned, generate: Any = generate) -> tuple[int, int, int, int]:
        done = await generate_planned(generate, planned)  # the server's two-pass guidance, continuations included
        texts = [c.text for c in done.completions]
        parsed, votes = count_votes(texts, len(planned.members))
        return len(texts), parsed, sum(c.num_tokens for c in done.completions), votes

    start = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in plan))
    seconds = time.perf_counter() - start
    llm.shutdown()
    del one, generate, llm  # now, not at interpreter teardown, where AsyncLLM.__del__ fails
    return Row("direct", seconds, *(sum(col) for col in zip(*results, strict=True)))  # type: ignore[arg-type]


def engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_model_len": args.max_model_len}
    if args.shape == "27b":
        kwargs["load_format"] = "dummy"
    if args.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = args.gpu_memory_utilization
    return kwargs


def engine_flags(args: argparse.Namespace) -> list[str]:
    """The same engine arguments as command-line flags (grm-serve passes unknown flags to vLLM)."""
    flags = []
    for key, value in engine_kwargs(args).items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def cpu_flags(max_model_len: int) -> list[str]:
    """On CPU, the engine settings grm-serve applies itself (README: per-request seeds with chunked
    prefill crash the CPU engine; float32 without native bf16), so the two servers run the same engine."""
    from vllm.platforms import current_platform

    from server.engines.vllm import cpu_has_native_bf16, set_cpu_environment

    if not current_platform.is_cpu():
        return []
    set_cpu_environment()  # inherited by the child process
    flags = ["--enforce-eager", "--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max_model_len)]
    return flags if cpu_has_native_bf16() else [*flags, "--dtype", "float32"]


def launch_openai_server(model: str, args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    from tests.launcher import free_port

    port = free_port()
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--port", str(port)]
    argv += ["--served-model-name", "grm", *engine_flags(args), *cpu_flags(args.max_model_len)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(2)
    proc.terminate()
    raise RuntimeError("vllm serve did not become healthy in time")


def table(rows: list[Row]) -> str:
    """Markdown: one line per path, ratios against direct and against the guided hand-written client."""
    by = {r.path: r for r in rows}
    lines = [
        "| path | seconds | samples | parse | gen tokens/s | valid votes/s | tok/s vs direct | votes/s vs openai |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vs_direct = f"{r.tokens_per_s / by['direct'].tokens_per_s:.3f}" if "direct" in by else ""
        anchor = by.get("openai")
        vs_openai = f"{r.votes_per_s / anchor.votes_per_s:.2f}" if anchor and anchor.votes_per_s else ""
        parse = f"{r.parsed}/{r.samples}"
        lines.append(
            f"| {r.path} | {r.seconds:.1f} | {r.samples} | {parse} | {r.tokens_per_s:.0f} | {r.votes_per_s:.1f} | "
            f"{vs_direct} | {vs_openai} |"
        )
    return "\n".join(lines)


async def run_http_path(path: str, url: str, model: str, pairs: list[dict], args: argparse.Namespace) -> Row:
    limits = httpx.Limits(max_connections=args.concurrency * args.k + 8)
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as http:
        if path == "server":
            return await through_server(url, pairs, args, http)
        return await hand_written_client(url, model, pairs, args, guided=path == "openai", http=http)


def main(argv: Sequence[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "rmb-dev.jsonl")
    parser.add_argument("--model", default="embedded", help="'embedded' or a local model folder")
    parser.add_argument("--shape", choices=("model", "27b"), default="model", help="27b: dummy 27B-shaped weights")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=64, help="pairs in flight on the HTTP paths")
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--gpu-memory-utilization", type=float, default=None)
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {', '.join(PATHS)}")
    parser.add_argument("--start-timeout", type=float, default=1200)
    parser.add_argument("--request-timeout", type=float, default=3600)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown path(s): {', '.join(sorted(unknown))}")

    from server.config import Settings
    from server.engines.model_files import resolve_model
    from tests.launcher import launch

    settings = Settings()
    model, _ = resolve_model(args.model, settings.cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix="grm-bench-"))
    if args.shape == "27b":
        model = str(shaped_model(Path(model), tmp / "model-27b", SHAPE_27B))
    pairs = load_pairs(args.data, args.pairs)
    rows: list[Row] = []
    for path in paths:
        if path == "direct":
            rows.append(asyncio.run(direct(model, pairs, args)))
        elif path == "server":
            flags = ["--log-level", "warning", "--model", model, "--meta-rm", "none", "--max-k", str(max(32, args.k))]
            flags += ["--max-concurrent-requests", str(args.concurrency), *engine_flags(args)]
            with launch(flags, log=tmp / "server.log", start_timeout_s=args.start_timeout) as srv:
                rows.append(asyncio.run(run_http_path(path, srv.url, "grm", pairs, args)))
        else:
            proc, url = launch_openai_server(model, args, tmp / f"{path}.log")
            try:
                rows.append(asyncio.run(run_http_path(path, url, "grm", pairs, args)))
            finally:
                proc.terminate()
                proc.wait(timeout=120)
        print(f"{path}: {rows[-1]}", flush=True)
    try:
        import vllm

        version = vllm.__version__
    except ImportError:
        version = "not installed"
    print(f"\nmodel={args.model} shape={args.shape} pairs={len(pairs)} k={args.k} max_tokens={args.max_tokens} "
          f"concurrency={args.concurrency} vLLM {version}")  # fmt: skip
    print(table(rows))
    if args.out is not None:
        args.out.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return rows


if __name__ == "__main__":
    main()
