"""Are scores from different GRM groups comparable? The same document judged beside different rivals.

For each of ``--queries`` dev pairs: the probe P (the chosen response) and the anchor A (the rejected
one) are judged in ``--groups`` groups, each with two other rivals (responses of other dev pairs), and
in ``--groups`` repeats of one group with other seeds. Printed per query and overall:

* noise floor: the spread (standard deviation) of P's mean vote over repeats of the same group;
* raw: the spread of P's mean vote across groups with different rivals (what plain splitting gives);
* anchored: the spread of P's anchor-calibrated mean across those groups (what /v1/rerank does:
  ``P - A_group + mean(A)``, server/serving/reranking.py).

    python benchmarks/rerank_groups.py --queries 4 --groups 6 --k 4 --max-tokens 192
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.config import Settings  # noqa: E402
from server.engines import create_engine  # noqa: E402
from server.pipeline.domain import Message  # noqa: E402
from server.pipeline.judges import DeepSeekGRM  # noqa: E402
from server.pipeline.prompts import get_template  # noqa: E402
from server.pipeline.scoring import Scorer, ScoreSpec  # noqa: E402


def spread(values: list[float]) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


async def main(args: argparse.Namespace) -> None:
    pairs = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    pairs = [p for p in pairs if len(p["chosen"]) + len(p["rejected"]) < 2500][: args.queries + 2 * args.groups]
    settings = Settings(k=args.k, max_tokens=args.max_tokens)
    engine = create_engine(
        "vllm", model=settings.model, cache_dir=settings.cache_dir, engine_kwargs=settings.engine_kwargs()
    )
    await engine.start()
    judge = DeepSeekGRM(template=get_template(settings.template))
    scorer = Scorer(
        judge,
        generate=engine.generate,
        max_group_size=4,
        format_guidance=True,
    )
    rows = []
    started = time.perf_counter()
    try:
        for q in range(args.queries):
            pair = pairs[q]
            messages = tuple(Message(m["role"], m["content"]) for m in pair["messages"])
            others = [p for i, p in enumerate(pairs) if i != q]

            def spec(rivals: list[str], seed: int, messages=messages, pair=pair) -> ScoreSpec:
                responses = (pair["rejected"], pair["chosen"], *rivals)  # anchor A = 0, probe P = 1
                return ScoreSpec(messages, responses, args.k, 0.5, 1.0, args.max_tokens, seed=seed)

            varied = [
                spec([others[2 * g]["chosen"], others[2 * g + 1]["rejected"]], seed=g) for g in range(args.groups)
            ]
            same = [spec([others[0]["chosen"], others[1]["rejected"]], seed=100 + g) for g in range(args.groups)]
            results = await scorer.score_many(varied + same)
            means = [(r.responses[0].mean_score, r.responses[1].mean_score) for r in results]
            if any(a is None or p is None for a, p in means):
                print(f"query {q}: a group had no parsed sample; skipped")
                continue
            across = [p for _, p in means[: args.groups]]
            anchors = [a for a, _ in means[: args.groups]]
            calibrated = [p - a + statistics.fmean(anchors) for p, a in zip(across, anchors, strict=True)]
            row = {
                "floor": spread([p for _, p in means[args.groups :]]),
                "raw": spread(across),
                "anchored": spread(calibrated),
            }
            rows.append(row)
            print(f"query {q} ({pair['source']}): " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    finally:
        await engine.shutdown()
    if rows:
        print(
            f"\nspread of the probe's mean vote (1..10), mean over {len(rows)} queries, k={args.k}, "
            f"{args.groups} groups each, {time.perf_counter() - started:.0f} s:"
        )
        for key in ("floor", "raw", "anchored"):
            print(f"  {key:<9} {statistics.fmean(r[key] for r in rows):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "rmb-dev.jsonl")
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--groups", type=int, default=6)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=192)
    asyncio.run(main(parser.parse_args()))
