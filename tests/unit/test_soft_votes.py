"""Soft votes read from the engine's logprobs (:mod:`server.pipeline.soft_votes`), on the fake engine's
deterministic tokens and logprob models (:mod:`server.engines.fake_tokens`)."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.engines.base import GenerationRequest, GenerationResult
from server.engines.fake import FakeEngine, budget_cut_script, shown_responses
from server.engines.fake_tokens import certain, tokenize
from server.pipeline.domain import Message, SampleStatus
from server.pipeline.judges import JUDGES, get_judge, states_preference, vote_scale
from server.pipeline.judges.testing import judge_script
from server.pipeline.scoring import Scorer, ScoreSpec
from server.pipeline.soft_values import SKIP_SHARE, SOFT_LOGPROBS

DIGITS = [str(d) for d in range(10)]


def boxed(scores):
    """A DeepSeek-GRM script writing ``scores`` (one per shown response, in shown order)."""
    text = f"Specific Criteria: c.\nAnalysis: a.\nScores: \\boxed{{{', '.join(map(str, scores))}}}"
    return lambda request: [text] * request.n


def model_of(at_score: dict[str, float], after_one: dict[str, float] | None = None):
    """A logprob model from probabilities: ``at_score`` where a score's first token is written (the written
    token added at 0.5 if absent), ``after_one`` after a ``1``, sure of everything else."""

    def model(previous, written):
        if previous.strip() == "1" and after_one is not None:
            probs = dict(after_one)
        elif written is not None and written.strip().isdigit() and previous in ("{", " ", ","):
            probs = dict(at_score)
        else:
            return certain(previous, written)
        if written is not None and written not in probs:
            probs[written] = 0.5
        return {t: math.log(p) for t, p in probs.items()}

    return model


def score(engine, judge=None, *, responses=("a",), k=2, format_guidance=False, aggregation="mean", temperature=0.5):
    judge = judge or get_judge("deepseek-grm")
    spec = ScoreSpec(
        messages=(Message("user", "q"),), responses=tuple(responses), k=k, temperature=temperature, top_p=1.0,
        max_tokens=512, seed=1, votes="soft", aggregation=aggregation,
    )  # fmt: skip
    scorer = Scorer(judge, generate=engine.generate, max_group_size=4, format_guidance=format_guidance)

    async def run():
        await engine.start()
        return await scorer.score(spec)

    return asyncio.run(run())


def passes(engine) -> list[GenerationRequest]:
    return [r for r in engine.requests if r.answer_token_ids]


@given(st.lists(st.integers(1, 10), min_size=1, max_size=4))
@settings(max_examples=30, deadline=None)
def test_a_judge_sure_of_its_scores_votes_them_softly_unchanged(scores):
    engine = FakeEngine(boxed(scores), logprob_model=certain)
    result = score(engine, responses=[f"r{i}" for i in range(len(scores))], k=1)
    (sample,) = result.samples
    assert sample.soft_scores == sample.scores
    assert passes(engine) == []


PROFILE_AGGREGATIONS = [
    (name, aggregation)
    for name in sorted(JUDGES)
    for aggregation in ("mean", "win_rate", "tiebreaker")
    if aggregation == "mean"
    or (get_judge(name).mode == "pairwise" and (aggregation == "win_rate" or states_preference(get_judge(name))))
]


@pytest.mark.parametrize(("name", "aggregation"), PROFILE_AGGREGATIONS)
def test_every_profile_sure_of_its_verdict_votes_as_hard(name, aggregation):
    judge = get_judge(name)
    engine = FakeEngine(judge_script(judge), logprob_model=certain)
    result = score(engine, judge, responses=("short", "a much longer one", "middling"), aggregation=aggregation)
    parsed = [s for s in result.samples if s.status is SampleStatus.PARSED]
    assert parsed and len(parsed) == len(result.samples)
    for s in parsed:
        assert s.soft_scores == pytest.approx(s.scores) and s.soft_source == "sampled"


written_digit = st.sampled_from(DIGITS[1:])
at_score = st.dictionaries(
    st.sampled_from([*DIGITS, *(" " + d for d in DIGITS), "the", " ", ",", "}", "10", " 1"]),
    st.floats(1e-6, 1.0),
    min_size=1,
    max_size=12,
)


@given(st.lists(written_digit, min_size=1, max_size=3), at_score, at_score)
@settings(max_examples=60, deadline=None)
def test_soft_votes_lie_within_the_scale(written, at, after):
    engine = FakeEngine(boxed(written), logprob_model=model_of(at, after))
    result = score(engine, responses=[f"r{i}" for i in range(len(written))], k=1)
    (sample,) = result.samples
    assert sample.status is SampleStatus.PARSED  # the written value always has mass
    assert all(1 <= v <= 10 for v in sample.soft_scores)


def test_renormalisation_ignores_tokens_that_spell_no_value():
    plain = FakeEngine(boxed([7]), logprob_model=model_of({"7": 0.5, "8": 0.25}))
    noisy = FakeEngine(boxed([7]), logprob_model=model_of({"7": 0.5, "8": 0.25, "the": 0.1, " ": 0.1, "0": 0.04}))
    (a,), (b,) = score(plain, k=1).samples, score(noisy, k=1).samples
    assert a.soft_scores == b.soft_scores
    assert a.soft_scores[0] == pytest.approx((7 + 8 * 0.5) / 1.5, abs=1e-4)


def test_ten_is_read_from_the_position_after_its_one():
    engine = FakeEngine(boxed([10]), logprob_model=model_of({"1": 0.6, "9": 0.2}, {"0": 0.75, "}": 0.25}))
    (sample,) = score(engine, k=1).samples
    # "1" holds 0.6: 0.75 of it is "10", 0.25 is "1"; "9" holds 0.2.
    expected = (0.6 * 0.75 * 10 + 0.6 * 0.25 * 1 + 0.2 * 9) / 0.8
    assert sample.soft_scores[0] == pytest.approx(expected, abs=1e-4)
    assert passes(engine) == []  # the sample wrote "1": its own next position says what follows


def test_an_alternative_one_is_resolved_by_a_scoring_pass():
    engine = FakeEngine(boxed([7]), logprob_model=model_of({"7": 0.6, "1": 0.2}, {"0": 0.5, ",": 0.5}))
    result = score(engine, k=1)
    (sample,) = result.samples
    (scoring,) = passes(engine)
    (planned,) = [r for r in engine.requests if not r.answer_token_ids]
    assert sample.soft_scores[0] == pytest.approx((0.6 * 7 + 0.1 * 10 + 0.1 * 1) / 0.8, abs=1e-4)
    assert (scoring.n, scoring.max_tokens, scoring.logprobs, scoring.guide_regex) == (1, 1, SOFT_LOGPROBS, None)
    assert (scoring.prompt, scoring.messages, scoring.system) == (planned.prompt, planned.messages, planned.system)
    text = engine.vocabulary.decode(scoring.answer_token_ids)
    assert text == sample.text[: sample.text.rindex("7")] + "1"  # the sample's tokens up to its score, then "1"
    assert sample.soft_passes == 1
    assert result.generation_tokens == sample.generation_tokens + 1  # the pass's token is counted


def test_an_unlikely_alternative_one_is_left_out_without_a_pass():
    tiny = SKIP_SHARE / 10
    engine = FakeEngine(boxed([7]), logprob_model=model_of({"7": 0.6, "8": 0.4, "1": tiny}, {"0": 0.5, ",": 0.5}))
    (sample,) = score(engine, k=1).samples
    assert passes(engine) == []
    assert sample.soft_scores[0] == pytest.approx(7.4, abs=1e-4)


def test_a_token_carrying_a_fixed_prefix_is_compared_with_alternatives_of_that_prefix():
    # " 7" is one token (the space before the value is part of it): " 8" is an alternative, "8" is not
    # (it would write "8" without the space the sample wrote, a text of another shape).
    engine = FakeEngine(boxed([3, 7]), logprob_model=model_of({" 8": 0.2, "8": 0.3, " 7": 0.6, "3": 1.0}))
    (sample,) = score(engine, responses=("a", "b"), k=1).samples
    assert " 7" in tokenize(sample.text)
    shown = dict(zip(sample.permutation, (0, 1), strict=True))  # caller index -> shown position
    votes = {shown[i]: v for i, v in enumerate(sample.soft_scores)}
    assert votes[1] == pytest.approx((7 * 0.6 + 8 * 0.2) / 0.8, abs=1e-4)
    assert votes[0] == pytest.approx((3 * 1.0 + 8 * 0.3) / 1.3, abs=1e-4)  # "{3" vs "{8": no prefix there


@pytest.mark.parametrize("name", ["skywork-critic", "rm-r1-instruct", "prometheus-2-relative"])
def test_an_ab_judges_soft_votes_are_win_probabilities(name):
    judge = get_judge(name)
    engine = FakeEngine(judge_script(judge))  # graded: the written label 0.7, the other 0.25
    result = score(engine, judge, responses=("short", "a much longer answer"), k=4)
    for s in result.samples:
        assert sum(s.soft_scores) == pytest.approx(1.0, abs=1e-4)
        assert max(s.soft_scores) == pytest.approx(0.7 / 0.95, abs=1e-4)
    assert vote_scale(judge, "mean").low == 0


class NoLogprobs(FakeEngine):
    """An engine that ignores the logprobs request."""

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result = await super().generate(request)
        stripped = [dataclasses.replace(c, logprobs=None) for c in result.completions]
        return dataclasses.replace(result, completions=stripped)


class Garbled(FakeEngine):
    """An engine whose token texts do not spell its output (a detokenizer that disagrees with the text)."""

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result = await super().generate(request)
        return dataclasses.replace(
            result,
            completions=[
                dataclasses.replace(c, logprobs=dataclasses.replace(c.logprobs, decode=lambda ids: "?" * len(ids)))
                for c in result.completions
            ],
        )


@pytest.mark.parametrize("engine", [NoLogprobs(), Garbled(), FakeEngine(boxed(["+7"]))], ids=["none", "garbled", "+7"])
def test_a_sample_whose_soft_scores_cannot_be_read_never_votes(engine):
    result = score(engine, k=2)
    assert {s.status for s in result.samples} == {SampleStatus.NO_SOFT_SCORE}
    assert all(s.scores is not None and s.soft_scores is None and not s.kept for s in result.samples)
    (response,) = result.responses
    assert response.score is None and response.status == "no_valid_samples" and response.valid_samples == 0


def test_a_verdict_a_guided_continuation_wrote_says_so():
    engine = FakeEngine(budget_cut_script)
    result = score(engine, responses=("short", "longer one"), k=2, format_guidance=True)
    assert all(s.continued for s in result.samples)
    assert {s.soft_source for s in result.samples} == {"guided"}
    assert all(s.status is SampleStatus.PARSED for s in result.samples)


def test_only_soft_requests_ask_for_logprobs():
    engine = FakeEngine()
    score(engine, responses=("a", "bb"))
    spec = ScoreSpec(messages=(Message("user", "q"),), responses=("a", "bb"), k=2, temperature=0.5, top_p=1.0,
                     max_tokens=256, seed=1)  # fmt: skip
    asyncio.run(Scorer(get_judge("deepseek-grm"), generate=engine.generate, max_group_size=4,
                       format_guidance=False).score(spec))  # fmt: skip
    soft, hard = engine.requests[: len(engine.requests) - 2], engine.requests[-2:]
    assert {r.logprobs for r in soft} == {SOFT_LOGPROBS} and {r.logprobs for r in hard} == {None}
    assert all(shown_responses(r.prompt) for r in hard)


class SentencePiece(FakeEngine):
    """Decodes as a SentencePiece tokenizer with a dummy prefix does (Llama 2, Mistral): a sequence whose
    first token carries a space decodes without it, while the engine's text, decoded after the prompt,
    keeps it."""

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result = await super().generate(request)
        texts = self.vocabulary.texts

        def decode(ids) -> str:
            text = self.vocabulary.decode(ids)
            return text[1:] if ids and texts[ids[0]].startswith(" ") else text

        return dataclasses.replace(
            result,
            completions=[
                dataclasses.replace(c, logprobs=dataclasses.replace(c.logprobs, decode=decode))
                for c in result.completions
            ],
        )


def test_a_leading_space_the_tokenizer_decodes_away_does_not_misplace_the_scores():
    text = " Specific Criteria: c.\nAnalysis: a.\nScores: \\boxed{7}"
    engine = SentencePiece(lambda request: [text] * request.n, logprob_model=model_of({"7": 0.5, "8": 0.5}))
    (sample,) = score(engine, k=1).samples
    assert sample.status is SampleStatus.PARSED
    assert sample.soft_scores == (7.5,)
