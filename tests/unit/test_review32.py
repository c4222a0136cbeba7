"""Review of soft votes (issue #32): reproductions of defects found, each failing on the soft branch's head."""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc
from types import SimpleNamespace

from server.engines.fake import FakeEngine
from server.pipeline.domain import Message, SampleStatus
from server.pipeline.judges import get_judge
from server.pipeline.scoring import Scorer, ScoreSpec


def _score(engine, judge, responses, votes="soft", k=1):
    spec = ScoreSpec(
        messages=(Message("user", "q"),), responses=tuple(responses), k=k, temperature=0.5, top_p=1.0,
        max_tokens=512, seed=1, votes=votes,
    )  # fmt: skip
    scorer = Scorer(judge, generate=engine.generate, max_group_size=8, format_guidance=False)

    async def run():
        await engine.start()
        return await scorer.score(spec)

    return asyncio.run(run())


ZERO = "Specific Criteria: c.\nAnalysis: a.\nScores: \\boxed{0, 7}"


def test_finding1_a_zero_the_hard_parser_clips_to_one_gets_no_soft_vote():
    """deepseek-grm's parser clips a written 0 to 1 (the model card's rule) and the sample votes; with
    soft votes the same parsed sample becomes no_soft_score and votes on nothing, so the responses a judge
    rates 0 lose exactly those samples (their soft mean is biased upwards, or they go unscored)."""
    judge = get_judge("deepseek-grm")
    hard = _score(FakeEngine(lambda r: [ZERO] * r.n), judge, ["a", "b"], votes="hard")
    soft = _score(FakeEngine(lambda r: [ZERO] * r.n), judge, ["a", "b"], votes="soft")
    assert all(x.mean_score is not None for x in hard.responses)
    (sample,) = soft.samples
    assert sample.status is SampleStatus.PARSED, sample.status
    assert all(x.mean_score is not None for x in soft.responses)


def test_finding2_a_lowercase_prometheus_label_parses_but_gets_no_soft_vote():
    """prometheus-2-relative reads ``[RESULT] a`` as A (case-insensitive) and the hard sample votes; its
    soft slot's values are only "A"/"B", so the same parsed sample is no_soft_score and never votes."""
    judge = get_judge("prometheus-2-relative")
    engine = FakeEngine(lambda r: ["Feedback: the first is better. [RESULT] a"] * r.n)
    (sample,) = _score(engine, judge, ["a", "b"]).samples
    assert sample.scores is not None  # the hard parser read it
    assert sample.status is SampleStatus.PARSED, sample.status


def test_finding3_vllm_token_logprobs_keep_every_position_of_a_long_sample():
    """``token_logprobs`` keeps vLLM's whole per-position list (a dict of 21 ``Logprob`` with decoded
    strings per generated token) alive for as long as the sample is being softened, i.e. until every
    scoring pass of its planned request has come back through the work gate, although soft votes read a
    handful of positions. A 4096-token completion holds ~19 MiB this way (k=32 samples in flight: ~600 MiB)."""
    from vllm.logprobs import Logprob

    from server.engines.vllm import token_logprobs

    n = 4096
    tokenizer = SimpleNamespace(decode=lambda ids, skip_special_tokens=True: "x" * len(ids))
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rng = random.Random(0)
    positions = [{rng.randrange(49152): Logprob(-rng.random(), r + 1, f"tok{r}") for r in range(21)} for _ in range(n)]
    output = SimpleNamespace(token_ids=list(range(n)), logprobs=positions)
    kept = token_logprobs(output, tokenizer)
    del output, positions
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert kept is not None
    assert retained < 2 * 2**20, f"{retained / 2**20:.1f} MiB retained for one {n}-token completion"
