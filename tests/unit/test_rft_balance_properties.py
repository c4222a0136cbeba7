"""Properties of position-balanced selection (grm_train.selection, ``balanced=True``) over random records:
the counts add up, every kept item is balanced by the position of its preferred response, and no wrong
trajectory is ever kept, by the select stage or by the hint stage that completes an item."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from grm_train.selection import Trajectory, cap_hinted, rebalance, select, slots_shown
from meta_rm.labels import sample_is_correct
from server.pipeline.shuffling import balanced_permutations


@st.composite
def records(draw: st.DrawFn, item_id: str, n: int | None = None, preferred: int | None = None, hint: bool = False):
    """One sampling-cache record: n responses, k samples in balanced rotations (as the sampler draws them,
    so k < n leaves positions unshown), each unparseable, or parsed with small scores (ties and wrong ones
    likely) or with the preferred response on top (every parsed one of a ``hint``-ed record)."""
    n = n if n is not None else draw(st.integers(2, 8))
    preferred = preferred if preferred is not None else draw(st.integers(0, n - 1))
    k = draw(st.integers(1, 10))
    perms = balanced_permutations(n, k, random.Random(draw(st.integers(0, 2**16))))
    score = st.one_of(st.none(), st.lists(st.integers(1, 3), min_size=n, max_size=n))
    samples = []
    for i, perm in enumerate(perms):
        scores = draw(score)
        if scores and (hint or draw(st.booleans())):  # half the parsed ones put the preferred response on top
            scores[preferred] = 4
        samples.append({
            "permutation": list(perm), "text": f"{item_id}-{i}", "status": "parsed" if scores else "unparseable",
            "scores": scores, "generation_tokens": 1,
        })  # fmt: skip
    return {"id": item_id, "preferred": preferred, "samples": samples}


@st.composite
def record_sets(draw: st.DrawFn) -> list[dict]:
    return [draw(records(f"i{j}")) for j in range(draw(st.integers(1, 6)))]


def position(t: Trajectory, record: dict) -> int:
    return t.permutation.index(record["preferred"])


def is_correct(t: Trajectory, record: dict) -> bool:
    """The trajectory is one of the record's samples (same text, order and scores) and that sample is correct."""
    (s,) = [s for s in record["samples"] if s["text"] == t.text]
    return tuple(s["permutation"]) == t.permutation and sample_is_correct(s["scores"], record["preferred"])


@settings(max_examples=300, deadline=None)
@given(record_sets())
def test_balanced_counts_add_up_and_account_for_every_correct_trajectory(recs):
    c = select(recs, balanced=True).counts()
    assert c["accepted"] + c["wrong"] + c["unbalanced"] + c["held"] + c["too_easy_trajectories"] == c["trajectories"]
    assert c["trajectories"] == sum(len(r["samples"]) for r in recs)
    assert c["too_easy_items"] + c["hint_needed_items"] + c["kept_items"] == c["items"] == len(recs)


@settings(max_examples=300, deadline=None)
@given(record_sets())
def test_balanced_accepts_only_correct_trajectories_as_many_at_each_shown_position(recs):
    chosen = select(recs, balanced=True)
    by_id = {r["id"]: r for r in recs}
    assert all(is_correct(t, by_id[t.item_id]) for t in chosen.accepted)
    assert len({(t.item_id, t.text) for t in chosen.accepted}) == len(chosen.accepted)  # no sample twice
    for item_id in {t.item_id for t in chosen.accepted}:
        record = by_id[item_id]
        at = Counter(position(t, record) for t in chosen.accepted if t.item_id == item_id)
        assert set(at) == set(slots_shown(record)) and len(set(at.values())) == 1


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(0, 6))
def test_the_hint_stage_fills_only_missing_positions_within_the_cap_and_keeps_only_correct_ones(data, cap):
    plain = data.draw(records("x", data.draw(st.integers(2, 4))))
    hinted = data.draw(records("x", len(plain["samples"][0]["permutation"]), plain["preferred"], hint=True))
    for s in hinted["samples"]:
        s["text"] = "hint-" + s["text"]
    if plain["id"] not in select([plain], balanced=True).hint_needed:
        return  # only hint-needed items reach the hint stage
    kept, counts = cap_hinted([hinted], cap, plain={"x": plain})
    shown = set(slots_shown(plain))
    have = {position(t, plain) for t in select([plain]).accepted}  # positions with a correct plain one
    assert counts["hinted_kept"] == sum(t.hinted for t in kept) <= cap
    assert counts["plain_kept"] == sum(not t.hinted for t in kept)
    assert counts["hinted_unsolved_items"] == (not kept)
    assert len({t.text for t in kept}) == len(kept)
    for t in kept:
        assert is_correct(t, hinted if t.hinted else plain)
        assert (position(t, plain) in have) != t.hinted  # hinted ones exactly at the positions plain lacks
    if kept:
        at = Counter(position(t, plain) for t in kept)
        assert set(at) == shown and len(set(at.values())) == 1


@settings(max_examples=300, deadline=None)
@given(record_sets(), st.data())
def test_rebalancing_after_a_cut_keeps_the_most_it_can_with_every_item_balanced(recs, data):
    accepted = select(recs, balanced=True).accepted
    left = [t for t in accepted if data.draw(st.booleans())]  # what a length cut might leave
    by_id = {r["id"]: r for r in recs}
    kept = [left[i] for i in rebalance(left, by_id)]
    assert all(t in left for t in kept) and [t for t in left if t in kept] == kept  # a subset, in order
    for record in recs:
        before = Counter(position(t, record) for t in left if t.item_id == record["id"])
        after = Counter(position(t, record) for t in kept if t.item_id == record["id"])
        m = min(before[s] for s in slots_shown(record)) if slots_shown(record) else 0
        assert after == Counter(dict.fromkeys(slots_shown(record), m) if m else {})
