import asyncio

from server.domain import Message, ResponseStatus, SampleStatus
from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from server.prompts import DEFAULT_TEMPLATE, get_template
from server.scoring import Scorer, ScoreSpec


def spec(responses, k=8, seed=0):
    return ScoreSpec((Message("user", "q"),), tuple(responses), k, 0.5, 1.0, 256, seed)


async def run(engine, s, **kw):
    await engine.start()
    scorer = Scorer(engine, get_template(DEFAULT_TEMPLATE), max_group_size=kw.get("group", 4), format_guidance=True)
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
