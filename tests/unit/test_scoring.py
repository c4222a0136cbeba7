import asyncio
import re

import pytest

from server.engines.base import Completion, GenerationRequest
from server.engines.fake import CUT_CRITERIA, FakeEngine, budget_cut_script, shown_responses
from server.pipeline.domain import Message, ResponseStatus, SampleStatus
from server.pipeline.judges import DeepSeekGRM
from server.pipeline.parsing import continuation, continuation_reserve, guidance_regex
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template
from server.pipeline.scoring import Scorer, ScoreSpec


def spec(responses, k=8, seed=0):
    return ScoreSpec((Message("user", "q"),), tuple(responses), k, 0.5, 1.0, 256, seed)


async def run(engine, s, **kw):
    await engine.start()
    scorer = Scorer(
        DeepSeekGRM(template=get_template(DEFAULT_TEMPLATE)),
        generate=engine.generate,
        max_group_size=kw.get("group", 4),
        format_guidance=True,
    )
    return await scorer.score(s, "rid")


def first_shown_wins(request: GenerationRequest) -> list[str]:
    """A maximally position-biased judge: the first response shown gets 10, the rest 1."""
    n = len(shown_responses(request.prompt))
    box = ", ".join(["10"] + ["1"] * (n - 1))
    return [f"Specific Criteria: p\nAnalysis: c\nScores: \\boxed{{{box}}}"] * request.n


def test_identical_orders_share_one_request_with_n():
    engine = FakeEngine()
    result = asyncio.run(run(engine, spec(["a", "bb"], k=8)))
    assert sorted(r.n for r in engine.requests) == [4, 4]
    assert len(result.samples) == 8


def test_balanced_orders_cancel_a_position_biased_judge():
    engine = FakeEngine(first_shown_wins)
    result = asyncio.run(run(engine, spec(["a", "b"], k=8)))
    assert [r.score for r in result.responses] == [44.0, 44.0]


def test_scores_come_back_in_the_callers_order():
    engine = FakeEngine()  # scores by length: longer wins
    result = asyncio.run(run(engine, spec(["short", "x" * 95], k=4)))
    assert [r.score for r in result.responses] == [4 * 1.0, 4 * 10.0]
    for s in result.samples:
        assert s.scores == (1, 10)


def test_unparseable_samples_are_dropped_not_guessed():
    def half_garbage(request):
        good = "Specific Criteria: p\nAnalysis: c\nScores: \\boxed{7, 3}"
        return [good if i % 2 == 0 else "I refuse to score." for i in range(request.n)]

    engine = FakeEngine(half_garbage)
    result = asyncio.run(run(engine, spec(["a", "b"], k=8, seed=None)))
    statuses = [s.status for s in result.samples]
    assert statuses.count(SampleStatus.UNPARSEABLE) == 4
    assert all(r.votes == 4 and r.valid_samples == 4 for r in result.responses)
    # each order voted twice; with scores mapped back, responses get 7+7+3+3 each way round
    assert sum(r.score for r in result.responses) == 40.0


def test_all_unparseable_gives_null_scores_with_a_status():
    engine = FakeEngine(lambda r: ["nothing"] * r.n)
    result = asyncio.run(run(engine, spec(["a", "b"], k=2)))
    assert all(r.score is None and r.status is ResponseStatus.NO_VALID_SAMPLES for r in result.responses)


def test_large_items_are_split_into_groups_each_with_k_samples():
    engine = FakeEngine()
    responses = ["x" * (10 * i) for i in range(5)]
    result = asyncio.run(run(engine, spec(responses, k=4), group=2))
    assert result.groups == [[0, 1], [2, 3], [4]]
    assert all(len(shown_responses(r.prompt)) <= 2 for r in engine.requests)
    assert all(r.votes == 4 for r in result.responses)
    assert [r.mean_score for r in result.responses] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_a_seed_makes_orders_and_engine_seeds_repeatable():
    a, b = FakeEngine(), FakeEngine()
    asyncio.run(run(a, spec(["a", "b", "c"], k=6, seed=42)))
    asyncio.run(run(b, spec(["a", "b", "c"], k=6, seed=42)))
    assert [(r.prompt, r.n, r.seed) for r in a.requests] == [(r.prompt, r.n, r.seed) for r in b.requests]
    assert all(r.seed is not None for r in a.requests)


def test_format_guidance_regex_is_sent_for_the_group_size():
    engine = FakeEngine()
    asyncio.run(run(engine, spec(["a", "b", "c"], k=3)))
    assert all(r.guide_regex and r.guide_regex.count("(10|[1-9])") == 3 for r in engine.requests)


def test_samples_the_budget_cut_are_completed_by_a_guided_continuation():
    engine = FakeEngine(budget_cut_script)
    result = asyncio.run(run(engine, spec(["a" * 5, "b" * 50], k=4, seed=3)))
    first = [r for r in engine.requests if not r.assistant_prefix]
    conts = [r for r in engine.requests if r.assistant_prefix]
    assert {r.max_tokens for r in first} == {256 - continuation_reserve(2)}
    assert len(conts) == 4  # one per cut sample, each n=1
    assert all(r.n == 1 and r.max_tokens == continuation_reserve(2) for r in conts)
    assert {r.assistant_prefix for r in conts} == {CUT_CRITERIA}
    assert {r.guide_regex for r in conts} == {continuation(CUT_CRITERIA, 2)[1]}
    assert all(r.seed is not None and re.search(r"-g0-p\d-c\d$", r.request_id) for r in conts)
    assert all(c.prompt == first[0].prompt or c.prompt == first[1].prompt for c in conts)
    # the continued samples parse and vote in the caller's order; their tokens are both passes'
    assert all(s.continued and s.status is SampleStatus.PARSED for s in result.samples)
    assert all(s.text.startswith(CUT_CRITERIA + " end\nAnalysis: ok") for s in result.samples)
    assert [r.score for r in result.responses] == [4.0, 24.0]
    assert result.generation_tokens == 4 * (100 + 12)


def test_continuations_of_a_seeded_item_repeat():
    a, b = FakeEngine(budget_cut_script), FakeEngine(budget_cut_script)
    asyncio.run(run(a, spec(["x", "yy"], k=4, seed=9)))
    asyncio.run(run(b, spec(["x", "yy"], k=4, seed=9)))
    assert [(r.request_id, r.seed) for r in a.requests] == [(r.request_id, r.seed) for r in b.requests]


@pytest.mark.parametrize(
    "completion",
    [
        Completion("The judge rambled past its budget", "length", 256),  # not the guided format: nothing guessed
        Completion("Specific Criteria: a\nAnalysis: b", "stop", 9),  # ended, not cut
    ],
)
def test_only_cut_samples_in_the_guided_format_are_continued(completion):
    engine = FakeEngine(lambda req: [completion] * req.n)
    result = asyncio.run(run(engine, spec(["a", "b"], k=2)))
    assert not any(r.assistant_prefix for r in engine.requests)
    assert all(s.status is SampleStatus.UNPARSEABLE and not s.continued for s in result.samples)


def test_a_budget_too_small_for_two_passes_is_never_continued():
    engine = FakeEngine(budget_cut_script)
    small = ScoreSpec((Message("user", "q"),), ("a", "b"), 2, 0.5, 1.0, 64, 0)
    result = asyncio.run(run(engine, small))
    assert not any(r.assistant_prefix for r in engine.requests)
    assert {r.max_tokens for r in engine.requests} == {64}
    assert all(r.guide_regex == guidance_regex(2, 64) for r in engine.requests)
    assert all(s.status is SampleStatus.UNPARSEABLE for s in result.samples)
