"""ItemResult.approx_bytes, what the dedup cache counts against --idempotency-cache-mib, stays an
honest upper estimate of the memory a result holds (measured with tracemalloc)."""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc

import pytest

from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from server.pipeline.domain import Message
from server.pipeline.judges import DeepSeekGRM
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template
from server.pipeline.scoring import Scorer, ScoreSpec


def varied_judge(seed: int):
    rng = random.Random(seed)

    def script(request: GenerationRequest) -> list[str]:
        scores = ", ".join(str(min(10, 1 + len(r) // 10)) for r in shown_responses(request.prompt))
        return [
            f"Specific Criteria: criteria {rng.random()} {'c' * rng.randint(10, 300)}\n"
            f"Analysis: analysis {rng.random()} {'a' * rng.randint(10, 600)}\n"
            f"Scores: \\boxed{{{scores}}}"
            for _ in range(request.n)
        ]

    return script


@pytest.mark.parametrize(
    ("responses", "k", "votes"), [(1, 8, "hard"), (2, 8, "hard"), (4, 32, "hard"), (8, 4, "hard"), (4, 32, "soft")]
)
def test_the_estimate_covers_the_memory_a_result_holds_and_is_at_most_twice_it(responses, k, votes):
    async def measure() -> tuple[float, float]:
        engine = FakeEngine(varied_judge(responses * k), record_limit=1)  # keeps one prompt, not 20
        await engine.start()
        judge = DeepSeekGRM(template=get_template(DEFAULT_TEMPLATE))
        scorer = Scorer(
            judge,
            generate=engine.generate,
            max_group_size=4,
            format_guidance=True,
        )
        spec = ScoreSpec(
            (Message("user", "q" * 100),),
            tuple(f"response {i} " * (i + 3) for i in range(responses)),
            k=k,
            temperature=0.5,
            top_p=1.0,
            max_tokens=256,
            votes=votes,
        )
        await scorer.score(spec)  # the fake's vocabulary (soft votes' tokens) is built before measuring
        results = []
        gc.collect()
        tracemalloc.start()
        for _ in range(20):
            results.append(await scorer.score(spec))
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return held / len(results), sum(r.approx_bytes() for r in results) / len(results)

    held, estimate = asyncio.run(measure())
    assert held <= estimate <= 2 * held, (held, estimate)


def test_a_non_ascii_text_counts_the_utf8_copy_the_json_encoder_leaves_beside_it():
    import sys

    from server.api.protocol import SampleOut
    from server.pipeline.domain import str_bytes

    text = "无法评分" * 1000
    estimate = str_bytes(text)
    SampleOut(
        group=0, responses=[0], permutation=[0], status="unparseable", principles=None, critique=None,
        scores=None, finish_reason="length", generation_tokens=1, kept=False, text=text,
    ).model_dump_json()  # fmt: skip
    assert sys.getsizeof(text) <= estimate  # the cached UTF-8 copy is now part of the string's size
