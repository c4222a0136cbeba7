"""The size of a ``/v1/render`` answer, estimated from the items before any prompt is built
(server/serving/rendering.py ``render_estimate``; review of issue #31, finding 4)."""

from __future__ import annotations

import pytest

from server.config import Settings
from server.pipeline.domain import Message
from server.pipeline.judges import get_judge
from server.pipeline.scoring import Scorer, ScoreSpec
from server.serving.rendering import render_estimate

JUDGES = ("deepseek-grm", "skywork-critic", "rm-r1-instruct", "nemotron-genrm", "prometheus-2-absolute")
DEFAULT = Settings.model_fields["max_render_bytes"].default


def spec(query: str, responses: list[str], k: int = 32, **more) -> ScoreSpec:
    return ScoreSpec((Message("user", query),), tuple(responses), k, 0.5, 1.0, 256, **more)


def answer_bytes(judge_name: str, item: ScoreSpec, max_group_size: int = 4) -> int:
    """What the plan's prompts weigh, field by field of a vLLM render: the prompt (and system) and the
    text the model reads, and a chat judge's messages."""
    scorer = Scorer(get_judge(judge_name), generate=None, max_group_size=max_group_size, format_guidance=True)  # type: ignore[arg-type]
    total = 0
    for planned in scorer.plan(item, "r"):
        q = planned.request
        prompt = len(q.prompt.encode()) + len((q.system or "").encode())
        total += 2 * prompt + sum(len(c.encode()) for _, c in q.messages or ())
    return total


@pytest.mark.parametrize("judge", JUDGES)
@pytest.mark.parametrize(("responses", "k"), [(1, 8), (2, 1), (3, 3), (5, 8), (9, 32)])
def test_the_estimate_counts_the_plans_requests(judge, responses, k):
    if get_judge(judge).mode == "pairwise":
        responses = max(responses, 2)  # a pairwise judge's item has two responses at least
    item = spec("q", [f"r{i}" for i in range(responses)], k)
    scorer = Scorer(get_judge(judge), generate=None, max_group_size=4, format_guidance=True)  # type: ignore[arg-type]
    assert render_estimate(get_judge(judge), 4, [item])[1] == len(scorer.plan(item, "r"))


@pytest.mark.parametrize("judge", JUDGES)
def test_the_estimate_is_within_a_tenth_of_what_the_plans_prompts_weigh(judge):
    item = spec("Why is the sky blue? " * 400, ["Because of Rayleigh scattering. " * 60 + str(i) for i in range(6)])
    estimate, _ = render_estimate(get_judge(judge), 4, [item])
    assert 0.9 <= estimate / answer_bytes(judge, item) <= 1.1


def test_the_estimate_stops_counting_once_past_the_limit():
    items = [spec("Q" * 10_000, [f"r{i}" for i in range(64)])] * 100
    total, requests = render_estimate(get_judge("deepseek-grm"), 4, items, stop_above=50_000)
    assert requests == 4  # the first group's four orders, each repeating the 10k question twice
    assert total == render_estimate(get_judge("deepseek-grm"), 4, [spec("Q" * 10_000, ["r0", "r1", "r2", "r3"])])[0]


def test_the_default_limit_renders_a_largest_item_and_a_large_batch_of_normal_items():
    """Any one deepseek-grm or skywork-critic item at the default per-item limits (a 200k-character
    conversation and 64 responses of up to 100k characters, a body under --max-body-bytes' 8 MiB), and
    a batch of 256 items of a 4k-character question and 8 responses of 2k characters."""
    largest = spec("Q" * 200_000, ["R" * 100_000] * 64)
    batch = [spec("Q" * 4_000, ["R" * 2_000] * 8)] * 256
    for judge in ("deepseek-grm", "skywork-critic"):
        assert render_estimate(get_judge(judge), 4, [largest])[0] <= DEFAULT, judge
        assert render_estimate(get_judge(judge), 4, batch)[0] <= DEFAULT, judge


def test_the_default_limit_refuses_many_items_of_a_largest_conversation():
    """The review's item (a 199k-character question, 64 short responses): 64 requests of 199k characters.
    Four of them (a 0.8 MB body) render, about 104 MB on vLLM (52 MB measured on the fake engine, which
    shows no chat text); twelve (2.4 MB) are refused."""
    item = spec("Q" * 199_000, [f"r{i}" for i in range(64)])
    assert 100e6 < render_estimate(get_judge("deepseek-grm"), 4, [item] * 4)[0] <= DEFAULT
    assert render_estimate(get_judge("deepseek-grm"), 4, [item] * 12, stop_above=DEFAULT)[0] > DEFAULT
