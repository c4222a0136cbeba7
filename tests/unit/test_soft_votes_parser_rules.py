"""Soft votes agree with the hard parser and stay bounded (issue #32's review): a value the parser clips
or reads case-insensitively votes as it reads it, a slot's scoring passes are capped, a pass over the
context makes its sample ``no_soft_score``, and vLLM's logprobs are kept compact."""

from __future__ import annotations

import asyncio
import gc
import math
import random
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pytest

from server.engines.base import GenerationRequest, PromptTooLongError
from server.engines.fake import FakeEngine
from server.engines.fake_tokens import certain
from server.pipeline.domain import Message, SampleStatus
from server.pipeline.judges import get_judge
from server.pipeline.judges.custom_file import read_judge_file
from server.pipeline.scoring import Scorer, ScoreSpec
from server.pipeline.soft_values import MAX_PASSES_PER_SLOT
from tests.api.test_soft_votes_admission import percent_judge, unsure_of_digits


def _score(engine, judge, responses, votes="soft", k=1, generate=None):
    spec = ScoreSpec(
        messages=(Message("user", "q"),), responses=tuple(responses), k=k, temperature=0.5, top_p=1.0,
        max_tokens=512, seed=1, votes=votes,
    )  # fmt: skip
    scorer = Scorer(judge, generate=generate or engine.generate, max_group_size=8, format_guidance=False)

    async def run():
        await engine.start()
        return await scorer.score(spec)

    return asyncio.run(run())


ZERO = "Specific Criteria: c.\nAnalysis: a.\nScores: \\boxed{0, 7}"


def _spread(table):
    """A logprob model writing ``table[previous]`` (text -> probability) where given, else certain."""

    def model(previous, written):
        if previous in table:
            return {t: math.log(p) for t, p in table[previous].items()}
        return certain(previous, written)

    return model


def test_a_zero_the_hard_parser_clips_to_one_is_a_parsed_soft_sample():
    """deepseek-grm's parser clips a written 0 to 1 (the model card's rule): the soft sample votes too."""
    judge = get_judge("deepseek-grm")
    hard = _score(FakeEngine(lambda r: [ZERO] * r.n), judge, ["a", "b"], votes="hard")
    soft = _score(FakeEngine(lambda r: [ZERO] * r.n), judge, ["a", "b"], votes="soft")
    assert all(x.mean_score is not None for x in hard.responses)
    (sample,) = soft.samples
    assert sample.status is SampleStatus.PARSED, sample.status
    assert all(x.mean_score is not None for x in soft.responses)


def test_mass_on_a_zero_counts_at_the_value_the_parser_clips_it_to():
    """At the first score: "0" 0.5 (read as 1), "1" 0.2 (then "," or "0" evenly: 1 or 10), "7" 0.3."""
    table = {"{": {"0": 0.5, "1": 0.2, "7": 0.3}, "1": {",": 0.5, "0": 0.5}}
    engine = FakeEngine(lambda r: [ZERO] * r.n, logprob_model=_spread(table))
    (sample,) = _score(engine, get_judge("deepseek-grm"), ["a", "b"]).samples
    shown_first = 0.5 * 1 + 0.2 * (0.5 * 1 + 0.5 * 10) + 0.3 * 7
    assert sorted(sample.soft_scores) == pytest.approx(sorted([shown_first, 7.0]), abs=1e-4)


def test_a_lowercase_prometheus_label_is_a_parsed_soft_sample():
    """prometheus-2-relative reads ``[RESULT] a`` as A (case-insensitive): the soft sample votes too."""
    judge = get_judge("prometheus-2-relative")
    engine = FakeEngine(lambda r: ["Feedback: the first is better. [RESULT] a"] * r.n)
    (sample,) = _score(engine, judge, ["a", "b"]).samples
    assert sample.scores is not None  # the hard parser read it
    assert sample.status is SampleStatus.PARSED, sample.status


def test_mass_on_a_lowercase_label_counts_for_its_label():
    """At the label: " a" 0.3 and " A" 0.3 name A, " B" 0.4 names B: A wins with 0.6."""
    table = {"]": {" a": 0.3, " A": 0.3, " B": 0.4}}
    engine = FakeEngine(lambda r: ["Feedback: x. [RESULT] A"] * r.n, logprob_model=_spread(table))
    result = _score(engine, get_judge("prometheus-2-relative"), ["a", "b"], k=2)
    for sample in result.samples:
        assert sorted(sample.soft_scores) == pytest.approx([0.4, 0.6], abs=1e-4)


def test_a_slots_scoring_passes_are_capped_on_a_wide_scale(tmp_path: Path):
    """On 0..100 every first digit but 0 opens a value of two digits: a slot takes at most the cap."""
    counter = iter(range(10**6))
    engine = FakeEngine(lambda r: [f"Reason {next(counter)}.\nScore: 57" for _ in range(r.n)],
                        logprob_model=unsure_of_digits)  # fmt: skip
    result = _score(engine, read_judge_file(percent_judge(tmp_path)), ["a"], k=4)
    assert all(s.status is SampleStatus.PARSED for s in result.samples)
    assert all(s.soft_passes <= MAX_PASSES_PER_SLOT for s in result.samples), [s.soft_passes for s in result.samples]


def test_a_scoring_pass_over_the_context_makes_its_sample_no_soft_score():
    """A pass (prompt + the sample's tokens + 1) the engine refuses as too long loses that sample's soft
    vote, not the call."""
    engine = FakeEngine(lambda r: ["Specific Criteria: c.\nAnalysis: a.\nScores: \\boxed{7, 8}"] * r.n,
                        logprob_model=_spread({"{": {"7": 0.5, "1": 0.5}}))  # fmt: skip

    async def generate(request: GenerationRequest):
        if request.answer_token_ids:  # a scoring pass: the sample already fills the context
            raise PromptTooLongError("prompt of 4097 tokens plus max_tokens=1 exceeds the model context")
        return await engine.generate(request)

    result = _score(engine, get_judge("deepseek-grm"), ["a", "b"], k=2, generate=generate)
    assert [s.status for s in result.samples] == [SampleStatus.NO_SOFT_SCORE] * 2
    assert all(s.scores is not None for s in result.samples)


def test_vllm_token_logprobs_keep_a_long_completion_compact():
    """vLLM's per-position ``Logprob`` dicts (21 objects with decoded strings per token, ~19 MiB for 4096
    tokens) are converted into arrays at once and dropped: a soft vote keeps a sample's logprobs until
    its scoring passes are back."""
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


def test_vllm_token_logprobs_read_back_what_vllm_gave():
    """The arrays give back each position's ids and (float32) logprobs in vLLM's order, and text on demand."""
    from vllm.logprobs import Logprob

    from server.engines.vllm import token_logprobs

    positions = [{5: Logprob(-0.25, 1, "a"), 9: Logprob(-1.5, 2, "b")}, {7: Logprob(-0.125, 1, "c")}]
    tokenizer = SimpleNamespace(decode=lambda ids, skip_special_tokens=True: "|".join(map(str, ids)))
    kept = token_logprobs(SimpleNamespace(token_ids=[5, 7], logprobs=positions), tokenizer)
    assert kept is not None
    assert kept.token_ids == (5, 7)
    assert list(kept.top(0).items()) == [(5, -0.25), (9, -1.5)]
    assert kept.top(1) == {7: -0.125}
    assert kept.decode([5, 7]) == "5|7"


def test_a_written_prefix_under_the_skip_share_is_still_read():
    """The sample wrote "1" (of 1 or 10) while holding it at 1e-6: its own next position costs no pass,
    so it is read rather than skipped (skipping it left the written value no mass: no_soft_score)."""
    table = {"{": {"1": 1e-6, "2": 1.0}, "1": {"}": 1.0}}
    engine = FakeEngine(lambda r: ["Specific Criteria: c.\nAnalysis: a.\nScores: \\boxed{1}"] * r.n,
                        logprob_model=_spread(table))  # fmt: skip
    (sample,) = _score(engine, get_judge("deepseek-grm"), ["a"]).samples
    assert sample.status is SampleStatus.PARSED, sample.status
    assert sample.soft_scores == pytest.approx((2.0,), abs=1e-4)
