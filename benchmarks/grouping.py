"""Grouping across calls, on vs off: OpenRLHF-style one-row /get_reward calls, side by side in one run.

8 prompts x 8 rollouts = 64 calls, each one row (``{"query": [prompt + rollout], "prompts": [prompt]}``,
the prompt in the embedded model's ChatML markup, each rollout ending in ``<|im_end|>``), all sent at
once as a GRPO step's rollouts finish. The server runs twice, with ``--group-window-s`` at the given
value and at 0 (off); everything else is the same. Tokens come from the server's own counters
(``/metrics``), so they are what the engine really processed.

    python benchmarks/grouping.py                       # embedded model, k=4, max_tokens=128
    python benchmarks/grouping.py --server-args "--model /models/grm" --k 8

Rollouts are the preference data's responses (a prompt's own chosen/rejected pair and responses of
other prompts, so some are off-topic, as a weak policy's are), cut to --max-response-chars.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.launcher import launch  # noqa: E402

CHATML = (
    "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n"
    "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
)
COUNTERS = ("grm_prompt_tokens_total", "grm_generation_tokens_total", "grm_grouped_rows_total")


def workload(path: Path, prompts: int, rollouts: int, max_chars: int) -> list[tuple[str, str]]:
    """(templated prompt, rollout + EOS) for every call."""
    pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = [p for p in pairs if len(p["messages"]) == 1][: prompts * rollouts // 2 + prompts]
    texts = [t[:max_chars] for p in pairs for t in (p["chosen"], p["rejected"])]
    calls = []
    for i in range(prompts):
        prompt = CHATML.format(q=pairs[i]["messages"][0]["content"][:max_chars])
        mine = [texts[2 * i], texts[2 * i + 1], *texts[2 * prompts + (rollouts - 2) * i :][: rollouts - 2]]
        calls += [(prompt, r + "<|im_end|>") for r in mine]
    return calls


def counters(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in out or name.startswith("grm_samples_total{"):
            out[name] = float(value)
    return out


async def fire(url: str, calls: list[tuple[str, str]], timeout: float) -> tuple[float, list[float]]:
    async with httpx.AsyncClient(timeout=timeout) as http:

        async def one(prompt: str, rollout: str) -> float:
            r = await http.post(f"{url}/get_reward", json={"query": [prompt + rollout], "prompts": [prompt]})
            r.raise_for_status()
            return r.json()["extra_logs"]["grm_group_size"][0]

        start = time.perf_counter()
        sizes = await asyncio.gather(*(one(p, r) for p, r in calls))
        return time.perf_counter() - start, list(sizes)


def run(window: float, calls: list[tuple[str, str]], args: argparse.Namespace) -> dict[str, float]:
    server_args = ["--log-level", "warning", "--k", str(args.k), "--max-tokens", str(args.max_tokens)]
    server_args += ["--group-window-s", str(window), *args.server_args.split()]
    with tempfile.TemporaryDirectory() as tmp, launch(server_args, log=Path(tmp) / "server.log") as srv:
        warm = calls[0]
        asyncio.run(fire(srv.url, [warm], args.timeout))  # first request compiles/warms the engine
        before = counters(srv.url)
        wall, sizes = asyncio.run(fire(srv.url, calls, args.timeout))
        after = counters(srv.url)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    parsed = delta.get('grm_samples_total{status="parsed"}', 0.0)
    unparseable = delta.get('grm_samples_total{status="unparseable"}', 0.0)
    n = len(calls)
    return {
        "window_s": window,
        "wall_s": wall,
        "prompt_tok_per_rollout": delta["grm_prompt_tokens_total"] / n,
        "gen_tok_per_rollout": delta["grm_generation_tokens_total"] / n,
        "tok_per_rollout": (delta["grm_prompt_tokens_total"] + delta["grm_generation_tokens_total"]) / n,
        "samples": parsed + unparseable,
        "parse_rate": parsed / max(1.0, parsed + unparseable),
        "mean_group_size": sum(sizes) / n,
        "grouped_rows": delta["grm_grouped_rows_total"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "rmb-dev.jsonl")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-response-chars", type=int, default=600)
    parser.add_argument("--window", type=float, default=0.05, help="--group-window-s of the 'on' run")
    parser.add_argument("--server-args", default="", help="more grm-serve flags, e.g. '--model /models/grm'")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    calls = workload(args.data, args.prompts, args.rollouts, args.max_response_chars)
    print(f"{len(calls)} one-row /get_reward calls ({args.prompts} prompts x {args.rollouts} rollouts), "
          f"k={args.k}, max_tokens={args.max_tokens}")  # fmt: skip
    rows = [run(args.window, calls, args), run(0.0, calls, args)]
    keys = list(rows[0])
    print("| grouping | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, row in zip(("on", "off"), rows, strict=True):
        print(f"| {name} | " + " | ".join(f"{row[k]:.3g}" for k in keys) + " |")
    on, off = rows
    print(f"tokens per rollout on/off: {on['tok_per_rollout'] / off['tok_per_rollout']:.3f}; "
          f"wall time on/off: {on['wall_s'] / off['wall_s']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
