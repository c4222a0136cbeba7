"""Property: adaptive k's ``rank`` rule returns the order full k gives, and stops as soon as it may.

Hypothesis draws items (1-7 responses, groups of 1-4, k 1-16, ``k_min``, a meta RM or none,
unparseable samples or none, hard or soft votes: the fake engine's graded logprobs make soft votes
fractions) and reranks (2-9 documents, anchored groups or not, ``top_n``) on a deterministic fake judge:
a sample's votes depend only on its seed (vLLM's child ``i`` of a request seeded ``s`` is seeded
``s + i``) and the responses it was shown, each response having a quality and a spread the test draws,
from indistinguishable to clear. Each case runs the full k (``off``) and the adaptive rule on the same
seeds.

Invariants:
* ``rank``: every pair of responses keeps its relation (above, tied, below by mean vote, unvoted
  last), so the order is the full k's; a rerank returns the ``top_n`` best, in order, that full k
  returns (or its whole order);
* every sample an adaptive item drew is one the full k drew (same order shown, same text): stopping
  keeps a prefix of the same samples;
* ``rank`` stops as soon as the textbook condition allows, for one group without a meta RM: at
  ``k_used < k`` every pair's vote difference exceeds 9 x the samples left, and at every round
  before it some pair's did not;
* ``stderr``: an item that stopped early has at least ``k_min`` samples per group and every mean
  vote's standard error within ``epsilon``.

The number of cases is ``GRM_ADAPTIVE_EXAMPLES`` (default 300, derandomised so CI is repeatable).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import os
import re
import statistics
from collections import Counter

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meta_rm.base import Trajectory
from meta_rm.fake import FakeMetaRM
from server.engines.base import Completion, GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from server.pipeline.adaptive import AdaptiveOptions, first_round, next_round
from server.pipeline.domain import ItemResult, Message
from server.pipeline.judges import DeepSeekGRM
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template
from server.pipeline.sampling import Linked, ScoreSpec
from server.pipeline.scoring import Scorer
from server.serving.reranking import anchored, plan_groups, rank

EXAMPLES = int(os.environ.get("GRM_ADAPTIVE_EXAMPLES", "300"))
_QUALITY = re.compile(r"q=(\d+) s=(\d+) u=(\d+)")


def _draw(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def judge(request: GenerationRequest) -> list[str | Completion]:
    """Child ``i`` of a request is seeded ``seed + i``; a response ``"... q=Q s=S u=U"`` gets votes
    ``Q + noise`` in ``[Q - S, Q + S]`` (clamped to 1..10); a sample fails to parse with chance U/10."""
    shown = shown_responses(request.prompt)
    out: list[str | Completion] = []
    for i in range(request.n):
        seed = (request.seed or 0) + i
        qualities = [tuple(map(int, _QUALITY.search(r).groups())) for r in shown]  # type: ignore[union-attr]
        if _draw(seed, shown, "parse") % 10 < qualities[0][2]:
            out.append(Completion("Specific Criteria: cut before its scores", "length", 50))
            continue
        votes = []
        for r, (q, s, _) in zip(shown, qualities, strict=True):
            noise = _draw(seed, r) % (2 * s + 1) - s
            votes.append(min(10, max(1, q + noise)))
        scores = ", ".join(map(str, votes))
        out.append(f"Specific Criteria: fake.\nAnalysis: seed {seed}.\nScores: \\boxed{{{scores}}}")
    return out


def meta_rule(t: Trajectory) -> float:
    return float(_draw(t.output, t.responses) % 97)


def response_text(i: int, quality: int, spread: int, unparseable: int) -> str:
    return f"response {i} q={quality} s={spread} u={unparseable}"


@st.composite
def cases(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 7))
    k = draw(st.integers(1, 16))
    unparseable = draw(st.sampled_from([0, 0, 2]))
    clear = draw(st.booleans())  # far-apart qualities, small spread: a vote decided early
    responses = []
    for i in range(n):
        quality = draw(st.integers(1, 10))
        spread = draw(st.integers(0, 1) if clear else st.integers(0, 4))
        responses.append(response_text(i, quality, spread, unparseable))
    votes = draw(st.sampled_from(["hard", "hard", "soft"]))  # soft: fractional votes from the fake's logprobs
    event(f"clear={clear}")
    event(f"votes={votes}")
    return {
        "votes": votes,
        "responses": tuple(responses),
        "k": k,
        "k_min": draw(st.integers(1, k)),
        "max_group_size": draw(st.integers(1, 4)),
        "meta": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def scorer(max_group_size: int, meta: bool) -> tuple[Scorer, FakeEngine]:
    engine = FakeEngine(judge)
    engine.started = True
    meta_rm = None
    if meta:
        meta_rm = FakeMetaRM(meta_rule)
        asyncio.run(meta_rm.start())
    profile = DeepSeekGRM(template=get_template(DEFAULT_TEMPLATE))
    return Scorer(profile, generate=engine.generate, max_group_size=max_group_size, format_guidance=False,
                  meta_rm=meta_rm), engine  # fmt: skip


def spec_of(case: dict, responses: tuple[str, ...], options: AdaptiveOptions) -> ScoreSpec:
    return ScoreSpec(
        messages=(Message("user", "Which is best?"),),
        responses=responses,
        k=case["k"],
        temperature=0.5,
        top_p=1.0,
        max_tokens=256,
        seed=case["seed"],
        adaptive=options,
        votes=case.get("votes", "hard"),
    )


def relations(means: list[float | None]) -> list[tuple[int, int, int]]:
    """Every pair's relation by mean (None below every number), as (a, b, sign)."""

    def key(x: float | None) -> float:
        return -math.inf if x is None else x

    out = []
    for a in range(len(means)):
        for b in range(a + 1, len(means)):
            x, y = key(means[a]), key(means[b])
            out.append((a, b, (x > y) - (x < y)))
    return out


def drawn(result: ItemResult) -> Counter:
    return Counter((s.group, s.permutation, s.text) for s in result.samples)


def group_tallies(result: ItemResult) -> list[list[tuple[float, ...]]]:
    """Per group, the kept vote vectors (soft votes for a soft item)."""
    ballots = [(s.group, s.ballot(result.votes)) for s in result.samples if s.kept]
    return [[b for group, b in ballots if group == g and b] for g in range(len(result.groups))]


def decided_textbook(votes: list[tuple[int, ...]], size: int, left: int) -> bool:
    """One group without a meta RM: every pair's vote difference exceeds 9 x the samples left."""
    sums = [sum(v[j] for v in votes) for j in range(size)]
    return all(abs(sums[a] - sums[b]) > 9 * left for a in range(size) for b in range(a + 1, size))


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_rank_keeps_the_full_k_order_and_stops_as_soon_as_it_may(case: dict) -> None:
    grm, _ = scorer(case["max_group_size"], case["meta"])
    options = AdaptiveOptions("rank", k_min=case["k_min"])
    full = asyncio.run(grm.score(spec_of(case, case["responses"], AdaptiveOptions())))
    fast = asyncio.run(grm.score(spec_of(case, case["responses"], options)))

    assert relations([r.mean_score for r in fast.responses]) == relations([r.mean_score for r in full.responses])
    assert not drawn(fast) - drawn(full), "an adaptive sample the full k did not draw"
    assert fast.k_used <= full.k_used == case["k"]
    every_k = len(fast.samples) == case["k"] * len(fast.groups)
    assert fast.stop_reason == ("k" if every_k else "rank")
    event(f"saved={not every_k}")


@st.composite
def one_group_cases(draw: st.DrawFn) -> dict:
    """One GRM group, no meta RM: the rule is the textbook condition, so when it must stop is known."""
    n = draw(st.integers(2, 4))
    unparseable = draw(st.sampled_from([0, 2]))
    qualities = draw(st.lists(st.integers(1, 10), min_size=n, max_size=n))
    spread = draw(st.integers(0, 3))
    k = draw(st.integers(2, 16))
    return {
        "responses": tuple(response_text(i, q, spread, unparseable) for i, q in enumerate(qualities)),
        "k": k,
        "k_min": draw(st.integers(1, min(k, 4))),
        "max_group_size": 4,
        "meta": False,
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None)
@given(case=one_group_cases())
def test_rank_stops_at_the_first_round_the_textbook_condition_allows(case: dict) -> None:
    """At every round boundary before the stop some pair's vote difference was within 9 x the samples
    left; at the stop (before k) every pair's exceeds it."""
    grm, _ = scorer(case["max_group_size"], meta=False)
    options = AdaptiveOptions("rank", k_min=case["k_min"])
    full = asyncio.run(grm.score(spec_of(case, case["responses"], AdaptiveOptions())))
    fast = asyncio.run(grm.score(spec_of(case, case["responses"], options)))
    size, k = len(case["responses"]), case["k"]
    assert decided_textbook(_in_draw_order(full, fast.k_used), size, k - fast.k_used) or fast.k_used == k
    boundary, rounds = first_round(options, size, k, None), 1
    while boundary < fast.k_used:
        assert not decided_textbook(_in_draw_order(full, boundary), size, k - boundary), boundary
        boundary, rounds = next_round(boundary, size, k), rounds + 1
    assert (boundary, rounds) == (fast.k_used, fast.rounds)
    event(f"rounds={fast.rounds}, saved={fast.k_used < k}")


def _in_draw_order(full: ItemResult, count: int) -> list[tuple[int, ...]]:
    """The parsed votes among the first ``count`` samples full k draws, in the rotation order rounds use.

    Full k sends one request per order (``n`` its count); rounds draw rotation after rotation, so the
    r-th sample of each order belongs to rotation r.
    """
    by_order: dict[tuple[int, ...], list] = {}
    for s in full.samples:
        by_order.setdefault(s.permutation, []).append(s)
    orders = list(by_order)
    taken: list = []
    r = 0
    while len(taken) < count:
        for perm in orders:
            if len(taken) < count and r < len(by_order[perm]):
                taken.append(by_order[perm][r])
        r += 1
    return [s.scores for s in taken if s.scores]


@st.composite
def reranks(draw: st.DrawFn) -> dict:
    case = draw(cases())
    n = draw(st.integers(2, 9))
    clear = draw(st.booleans())
    case["responses"] = tuple(
        response_text(i, draw(st.integers(1, 10)), draw(st.integers(0, 1) if clear else st.integers(0, 4)), 0)
        for i in range(n)
    )
    case["max_group_size"] = draw(st.integers(2, 4))
    case["anchor"] = draw(st.booleans())
    case["top_n"] = draw(st.none() | st.integers(1, n))
    return case


async def _rerank(grm: Scorer, case: dict, options: AdaptiveOptions) -> list[int]:
    documents = case["responses"]
    groups = plan_groups(len(documents), case["max_group_size"], anchor=case["anchor"])
    specs = [spec_of(case, tuple(documents[i] for i in g), options) for g in groups]
    linked = Linked(tuple(tuple(g) for g in groups), len(documents), anchored(groups), case["top_n"])
    results = await grm.score_linked(specs, linked)
    ranked = rank(groups, results, len(documents))
    return [d.index for d in ranked][: case["top_n"]], results


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=reranks())
def test_rank_keeps_a_reranks_top_n_in_order_or_its_whole_order(case: dict) -> None:
    grm, _ = scorer(case["max_group_size"], case["meta"])
    full, full_results = asyncio.run(_rerank(grm, case, AdaptiveOptions()))
    fast, fast_results = asyncio.run(_rerank(grm, case, AdaptiveOptions("rank", k_min=case["k_min"])))
    assert fast == full  # the top_n best in their order (all of them without top_n), as full k returns them
    for f, a in zip(full_results, fast_results, strict=True):
        assert not drawn(a) - drawn(f)
    event(f"saved={any(r.k_used < case['k'] for r in fast_results)}")


@settings(max_examples=EXAMPLES // 2, derandomize=True, deadline=None)
@given(case=cases(), epsilon=st.sampled_from([0.25, 0.5, 1.0]))
def test_stderr_stops_only_with_every_mean_that_precise(case: dict, epsilon: float) -> None:
    grm, _ = scorer(case["max_group_size"], case["meta"])
    options = AdaptiveOptions("stderr", epsilon=epsilon, k_min=case["k_min"])
    full = asyncio.run(grm.score(spec_of(case, case["responses"], AdaptiveOptions())))
    fast = asyncio.run(grm.score(spec_of(case, case["responses"], options)))
    assert not drawn(fast) - drawn(full)
    per_group = Counter(s.group for s in fast.samples)
    for g, votes in enumerate(group_tallies(fast)):
        if per_group[g] >= case["k"]:
            continue  # drew the whole budget: no promise
        assert per_group[g] >= case["k_min"]
        assert len(votes) >= 2
        for j in range(len(fast.groups[g])):
            column = [v[j] for v in votes]
            assert statistics.stdev(column) / math.sqrt(len(column)) <= epsilon
    event(f"saved={fast.k_used < case['k']}")


def test_a_clear_vote_stops_early_with_and_without_a_meta_rm() -> None:
    """Far-apart responses judged without noise: rank stops at its earliest point, for k=16."""
    case = {"k": 16, "k_min": 2, "max_group_size": 4, "seed": 5, "responses": (
        response_text(0, 10, 0, 0), response_text(1, 1, 0, 0))}  # fmt: skip
    for meta, expected in ((False, 10), (True, 14)):  # earliest_rank_stop 9 and 13, in rotations of 2
        grm, _ = scorer(4, meta)
        result = asyncio.run(grm.score(spec_of(case, case["responses"], AdaptiveOptions("rank", k_min=2))))
        assert (result.k_used, result.stop_reason, result.rounds) == (expected, "rank", 1)
        single = dataclasses.replace(spec_of(case, case["responses"][:1], AdaptiveOptions("rank", k_min=2)))
        alone = asyncio.run(grm.score(single))
        assert (alone.k_used, alone.stop_reason) == (2, "rank")  # one response: its order is trivially final


def test_stderr_with_too_few_meta_rm_votes_for_a_standard_error_draws_k_in_one_round() -> None:
    """k_meta 2 of k=16 keeps two votes only at full k: stderr cannot stop early, so it does not try."""
    case = {"k": 16, "seed": 1, "responses": (response_text(0, 6, 0, 0), response_text(1, 2, 0, 0))}
    grm, _ = scorer(4, meta=True)
    for k_meta, expected in ((2, (16, "k", 1)), (8, (4, "stderr", 1))):
        spec = dataclasses.replace(spec_of(case, case["responses"], AdaptiveOptions("stderr", k_min=2)), k_meta=k_meta)
        result = asyncio.run(grm.score(spec))
        assert (result.k_used, result.stop_reason, result.rounds) == expected


def test_rounds_halve_what_is_left_so_an_undecided_item_takes_about_log2_k_rounds() -> None:
    def schedule(rule: str, size: int, k: int) -> list[int]:
        drawn = first_round(AdaptiveOptions(rule), size, k, None)  # type: ignore[arg-type]
        rounds = [drawn]
        while drawn < k:
            drawn = next_round(drawn, size, k)
            rounds.append(drawn)
        return rounds

    assert schedule("stderr", 2, 8) == [4, 6, 8]
    assert schedule("rank", 2, 8) == [6, 8]
    assert schedule("stderr", 2, 16) == [4, 10, 14, 16]
    assert schedule("rank", 2, 32) == [18, 26, 30, 32]
    assert schedule("stderr", 1, 16) == [4, 10, 13, 15, 16]  # a lone response: at least two samples a round
    assert schedule("stderr", 3, 8) == [6, 8]  # whole rotations of three
