"""Property: adaptive k on a pairwise judge, whose responses are each judged in several pairs.

Hypothesis draws items on a seeded, noisy stand-in pairwise profile (``tests/unit/noisy_pairwise.py``:
1..5 in halves, 1..10, or A/B verdicts; unparseable samples, ties, a graded preference), under every
aggregation (``mean``, ``win_rate``, ``tiebreaker``: votes on 1..5, 0..1, -1.5..7.5, ...), both
pairings (``circular``, ``all_pairs``), 2-6 responses in pools of 2-8, k 2-16, with and without a
meta RM, and runs full k (``off``) and the adaptive rule on the same seeds.

Invariants:
* ``rank``: every pair of responses keeps its relation by pooled mean (above, tied, below; unvoted
  last), so the order is the full k's; a rerank (anchored or not, ``top_n`` or not) returns full k's;
* every sample an adaptive item drew is one the full k drew (same pair, order and text);
* ``stderr``: a set that stopped before k drew ``k_min`` samples and every response it judges has
  at least two kept votes, pooled over all its sets, with a standard error within ``epsilon``;
* each pair shows each of its responses first equally often: over k samples each order k/2 times
  (k even; one more of one order for k odd), and at every adaptive stop point;
* relabelling: permuting a request's responses permutes their scores (plain path, a judge whose
  verdict depends only on what it is shown, position bias included when k is even), under
  ``all_pairs`` (and ``circular`` up to 3 responses, where it is all pairs: for more, which pairs
  are judged depends on the caller's order, by design);
* ``normalized_score`` is the pooled mean times the votes one set gives at full k (k, or ``k_meta``),
  however many sets judge the response.

Cases per property: ``GRM_ADAPTIVE_EXAMPLES`` (default 300; ``stderr`` and reranks half), derandomised.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import statistics
from collections import Counter

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meta_rm.fake import FakeMetaRM
from server.engines.fake import FakeEngine
from server.pipeline.adaptive import AdaptiveOptions
from server.pipeline.domain import ItemResult, Message
from server.pipeline.judges import AGGREGATIONS, PAIRINGS
from server.pipeline.sampling import Linked, ScoreSpec
from server.pipeline.scoring import Scorer
from server.serving.reranking import anchored, plan_groups, rank
from tests.unit.noisy_pairwise import JUDGES, SINGLE, content_script, draw, response_text, seeded_script

EXAMPLES = int(os.environ.get("GRM_ADAPTIVE_EXAMPLES", "300"))
PROFILES = dict((*JUDGES, SINGLE))
SETTINGS = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def cases(draw_: st.DrawFn, n_min: int = 2, n_max: int = 6, decisive: bool = False, single: bool = False) -> dict:
    """An item; ``decisive``: responses judged in several pairs, far apart, k 8-16: the cases where
    ``rank`` stops pooled responses early, so where its bounds on pooled means are put to the test;
    ``single``: the pointwise one-response judge may be drawn too."""
    name = draw_(st.sampled_from(sorted(n for n, _ in (*JUDGES, SINGLE) if single or n != SINGLE[0])))
    profile = PROFILES[name]
    n, k = draw_(st.integers(n_min, n_max)), draw_(st.integers(8 if decisive else 2, 16))
    unparseable = draw_(st.sampled_from([0, 0, 2]))
    clear = decisive or draw_(st.booleans())  # qualities spread evenly over the scale, small noise
    if clear:
        qualities = draw_(st.permutations([round(i * profile.steps / (n - 1)) for i in range(n)]))
    else:
        qualities = draw_(st.lists(st.integers(0, profile.steps), min_size=n, max_size=n))
    responses = tuple(
        response_text(i, q, draw_(st.integers(0, 1 if clear else 3)), unparseable) for i, q in enumerate(qualities)
    )
    case = {
        "judge": name,
        "aggregation": draw_(st.sampled_from(AGGREGATIONS)),
        "pairing": draw_(st.sampled_from(PAIRINGS)),
        "responses": responses,
        "k": k,
        "k_min": draw_(st.integers(1, k)),
        "max_group_size": draw_(st.sampled_from([4, 8] if decisive else [2, 3, 4, 8])),
        "meta": draw_(st.sampled_from([False, False, True] if decisive else [False, True])),
        "seed": draw_(st.integers(0, 2**31 - 1)),
    }
    event(f"{name} {case['aggregation']}")
    return case


def scorer(case: dict) -> Scorer:
    profile = PROFILES[case["judge"]]
    engine = FakeEngine(seeded_script(profile))
    engine.started = True
    meta_rm = None
    if case["meta"]:
        meta_rm = FakeMetaRM(lambda t: float(draw(t.output, t.responses) % 97))
        asyncio.run(meta_rm.start())
    return Scorer(profile, generate=engine.generate, max_group_size=case["max_group_size"], format_guidance=False,
                  meta_rm=meta_rm)  # fmt: skip


def spec_of(case: dict, responses: tuple[str, ...], options: AdaptiveOptions) -> ScoreSpec:
    return ScoreSpec(
        messages=(Message("user", "Which is better?"),),
        responses=responses,
        k=case["k"],
        temperature=0.5,
        top_p=1.0,
        max_tokens=256,
        seed=case["seed"],
        adaptive=options,
        pairing=case["pairing"],
        aggregation=case["aggregation"],
    )


def both(case: dict, options: AdaptiveOptions) -> tuple[ItemResult, ItemResult]:
    """Full k and the adaptive rule on the same seeds."""
    grm = scorer(case)
    full = asyncio.run(grm.score(spec_of(case, case["responses"], AdaptiveOptions())))
    fast = asyncio.run(grm.score(spec_of(case, case["responses"], options)))
    return full, fast


def relations(means: list[float | None]) -> list[int]:
    """Every pair's relation by mean (None below every number)."""
    key = [-math.inf if m is None else m for m in means]
    return [(x > y) - (x < y) for a, x in enumerate(key) for y in key[a + 1 :]]


def drawn(result: ItemResult) -> Counter:
    return Counter((s.group, s.permutation, s.text) for s in result.samples)


def assert_balanced(result: ItemResult) -> None:
    """Each pair's samples show each of its responses first equally often (one more at an odd count)."""
    for g, members in enumerate(result.groups):
        if len(members) < 2:
            continue
        orders = Counter(s.permutation for s in result.samples if s.group == g)
        total = sum(orders.values())
        assert set(orders) <= {(0, 1), (1, 0)}
        assert abs(orders[(0, 1)] - orders[(1, 0)]) == total % 2, (g, orders)


@SETTINGS
@given(case=cases() | cases(n_min=3, decisive=True))
def test_rank_on_pooled_pairs_keeps_the_full_k_order(case: dict) -> None:
    full, fast = both(case, AdaptiveOptions("rank", k_min=case["k_min"]))
    assert relations([r.mean_score for r in fast.responses]) == relations([r.mean_score for r in full.responses])
    assert not drawn(fast) - drawn(full), "an adaptive sample the full k did not draw"
    assert fast.k_used <= case["k"]
    assert_balanced(full)
    assert_balanced(fast)
    saved = len(fast.samples) < len(full.samples)
    assert fast.stop_reason == ("rank" if saved or not fast.groups else "k")
    pooled = max(Counter(r for members in fast.groups for r in members).values(), default=0) > 1
    event(f"pooled={pooled} saved={saved}")


@settings(SETTINGS, max_examples=max(1, EXAMPLES // 2))
@given(case=cases(), epsilon=st.sampled_from([0.05, 0.1, 0.25, 0.5]))
def test_stderr_stops_a_pair_only_with_every_pooled_standard_error_that_small(case: dict, epsilon: float) -> None:
    full, fast = both(case, AdaptiveOptions("stderr", epsilon=epsilon, k_min=case["k_min"]))
    assert not drawn(fast) - drawn(full)
    assert_balanced(fast)
    per_set = Counter(s.group for s in fast.samples)
    pooled: dict[int, list[float]] = {}
    for g, members in enumerate(fast.groups):
        for s in fast.samples:
            if s.group == g and s.kept and s.scores is not None:
                for local, response in enumerate(members):
                    pooled.setdefault(response, []).append(s.scores[local])
    for g, members in enumerate(fast.groups):
        if per_set[g] >= case["k"]:
            continue  # drew the whole budget: no promise
        assert per_set[g] >= case["k_min"]
        for response in members:
            votes = pooled.get(response, [])
            assert len(votes) >= 2
            assert statistics.stdev(votes) / math.sqrt(len(votes)) <= epsilon
    event(f"saved={fast.k_used < case['k']}")


@st.composite
def reranks(draw_: st.DrawFn) -> dict:
    case = draw_(cases(n_min=2, n_max=9, single=True))
    case["max_group_size"] = draw_(st.integers(2, 4))
    case["anchor"] = draw_(st.booleans())
    if case["anchor"] and draw_(st.booleans()):  # a hard-to-judge anchor: some items may get no anchor vote
        case["responses"] = (re.sub(r"u=\d", "u=9", case["responses"][0]), *case["responses"][1:])
    case["top_n"] = draw_(st.none() | st.integers(1, len(case["responses"])))
    return case


def _rerank(case: dict, options: AdaptiveOptions) -> tuple[list[int], list[ItemResult]]:
    documents = case["responses"]
    groups = plan_groups(len(documents), case["max_group_size"], anchor=case["anchor"])
    specs = [spec_of(case, tuple(documents[i] for i in g), options) for g in groups]
    linked = Linked(tuple(tuple(g) for g in groups), len(documents), anchored(groups), case["top_n"])
    results = asyncio.run(scorer(case).score_linked(specs, linked))
    return [d.index for d in rank(groups, results, len(documents))][: case["top_n"]], results


@settings(SETTINGS, max_examples=max(1, EXAMPLES // 2))
@given(case=reranks())
def test_rank_keeps_a_pairwise_reranks_top_n_in_order_anchored_or_not(case: dict) -> None:
    """Pairwise judges, and a one-response judge: a rerank's item is then several sets, and the anchor
    is in only some of them."""
    full, full_results = _rerank(case, AdaptiveOptions())
    fast, fast_results = _rerank(case, AdaptiveOptions("rank", k_min=case["k_min"]))
    assert fast == full
    for f, a in zip(full_results, fast_results, strict=True):
        assert not drawn(a) - drawn(f)
    event(f"anchored={case['anchor']} saved={any(r.k_used < case['k'] for r in fast_results)}")
    event(case["judge"])


def test_k_normalised_sums_of_pooled_responses_are_one_sets_worth_of_votes() -> None:
    """Three responses in circular pairs, an A/B judge that always prefers the better: each response is
    judged in two sets, so full k gives it 2k votes (2 k_meta with a meta RM), and score sums them; its
    normalized_score (and raw reward) is the pooled mean (a win rate: 1, 1/2, 0) times the votes one
    set gives, k (k_meta), adaptive or not: not a count of the pairs its pool gave it (review #31)."""
    case = {"judge": "ab", "aggregation": "mean", "pairing": "circular", "k": 16, "k_min": 2, "max_group_size": 8,
            "seed": 3, "responses": tuple(response_text(i, q, 0, 0) for i, q in enumerate((9, 5, 0)))}  # fmt: skip
    for meta, per_set in ((False, 16), (True, 8)):
        full, fast = both({**case, "meta": meta}, AdaptiveOptions("rank", k_min=2))
        assert [r.mean_score for r in full.responses] == [r.mean_score for r in fast.responses] == [1, 0.5, 0]
        for f, a in zip(full.responses, fast.responses, strict=True):
            assert f.votes == 2 * per_set and f.score == f.mean_score * 2 * per_set
            assert f.normalized_score == a.normalized_score == f.mean_score * per_set
        if not meta:  # decided once 2/3 of k is drawn, so in the round that ends at 14 of 16
            assert (fast.k_used, fast.stop_reason) == (14, "rank") and fast.responses[0].votes == 28


@st.composite
def relabellings(draw_: st.DrawFn) -> dict:
    name = draw_(st.sampled_from(sorted(dict(JUDGES))))
    n, k = draw_(st.integers(2, 6)), draw_(st.integers(2, 16))
    unparseable = draw_(st.sampled_from([0, 3]))
    responses = tuple(response_text(i, draw_(st.integers(0, PROFILES[name].steps)), 0, unparseable) for i in range(n))
    return {
        "judge": name,
        "aggregation": draw_(st.sampled_from(AGGREGATIONS)),
        "pairing": "all_pairs" if n > 3 else draw_(st.sampled_from(PAIRINGS)),
        "responses": responses,
        "k": k,
        "bias": k % 2 == 0 and draw_(st.booleans()),  # a position bias cancels only over both orders equally
        "max_group_size": 8,
        "meta": draw_(st.booleans()),
        "seed": draw_(st.integers(0, 2**31 - 1)),
        "other_seed": draw_(st.integers(0, 2**31 - 1)),
        "order": draw_(st.permutations(range(n))),
    }


@settings(SETTINGS, max_examples=max(1, EXAMPLES // 2))
@given(case=relabellings())
def test_relabelling_the_responses_permutes_their_scores(case: dict) -> None:
    profile = PROFILES[case["judge"]]

    def score(responses: tuple[str, ...], seed: int) -> ItemResult:
        engine = FakeEngine(content_script(profile, case["bias"]))
        engine.started = True
        meta_rm = None
        if case["meta"]:  # rates what it is shown, finely enough that two different samples never tie
            meta_rm = FakeMetaRM(lambda t: float(draw(t.output, t.responses) % 2**40))
            asyncio.run(meta_rm.start())
        grm = Scorer(profile, generate=engine.generate, max_group_size=8, format_guidance=False, meta_rm=meta_rm)
        result = asyncio.run(grm.score(spec_of({**case, "seed": seed}, responses, AdaptiveOptions())))
        assert_balanced(result)
        return result

    order = case["order"]
    original = score(case["responses"], case["seed"])
    relabelled = score(tuple(case["responses"][i] for i in order), case["other_seed"])
    assert [relabelled.responses[i] for i in range(len(order))] == [original.responses[i] for i in order]
    event(f"bias={case['bias']} meta={case['meta']}")
