"""SPCT's rejective selection (grm_train.selection): which trajectories are kept, and that the counts add up."""

from __future__ import annotations

import pytest

from grm_train.selection import Trajectory, cap_hinted, select


def sample(scores: list[int] | None, perm: tuple[int, ...] = (0, 1), text: str = "t") -> dict:
    status = "parsed" if scores is not None else "unparseable"
    return {"permutation": list(perm), "text": text, "status": status, "scores": scores, "generation_tokens": 5}


def record(item_id: str, samples: list[dict], preferred: int = 0) -> dict:
    return {"id": item_id, "preferred": preferred, "samples": samples}


EASY = record("easy", [sample([8, 3]), sample([9, 2], (1, 0))])
MIXED = record("mixed", [sample([8, 3], text="right"), sample([3, 8], text="wrong"), sample(None), sample([5, 5])])
HARD = record("hard", [sample([2, 9]), sample(None)])


def test_only_the_correct_trajectories_of_a_partly_solved_item_are_accepted():
    chosen = select([MIXED])
    assert [t.text for t in chosen.accepted] == ["right"]
    assert chosen.accepted[0] == Trajectory("mixed", (0, 1), "right", (8, 3))


def test_an_item_the_judge_always_gets_right_is_rejected_as_too_easy():
    chosen = select([EASY])
    assert chosen.accepted == [] and chosen.too_easy_items == 1 and chosen.too_easy_trajectories == 2


def test_a_tie_and_an_unparseable_sample_are_wrong():
    chosen = select([record("x", [sample([5, 5]), sample(None)])])
    assert chosen.wrong == 2 and chosen.unparseable == 1 and chosen.hint_needed == ["x"]


def test_best_of_n_needs_the_preferred_response_strictly_above_every_other():
    item = record("bon", [sample([7, 9, 2], (0, 1, 2)), sample([7, 6, 7], (2, 0, 1)), sample([7, 6, 5])], preferred=0)
    assert [t.scores for t in select([item]).accepted] == [(7, 6, 5)]


def test_the_counts_add_up_over_trajectories_and_items():
    counts = select([EASY, MIXED, HARD]).counts()
    assert counts["accepted"] + counts["wrong"] + counts["too_easy_trajectories"] == counts["trajectories"] == 8
    assert counts["too_easy_items"] + counts["hint_needed_items"] + counts["kept_items"] == counts["items"] == 3
    assert (counts["accepted"], counts["wrong"], counts["unparseable"]) == (1, 5, 2)


def test_hinted_trajectories_are_capped_per_item_and_marked():
    solved = record("a", [sample([9, 1], text="h1"), sample([1, 9]), sample([8, 2], text="h2")])
    unsolved = record("b", [sample([1, 9]), sample(None)])
    kept, counts = cap_hinted([solved, unsolved], cap=1)
    assert [(t.item_id, t.text, t.hinted) for t in kept] == [("a", "h1", True)]
    assert counts == {
        "hinted_items": 2,
        "hinted_trajectories": 5,
        "hinted_correct": 2,
        "hinted_kept": 1,
        "hinted_unsolved_items": 1,
    }


def test_a_larger_cap_keeps_more_and_a_zero_cap_none():
    solved = record("a", [sample([9, 1], text="h1"), sample([8, 2], text="h2")])
    assert [t.text for t in cap_hinted([solved], cap=5)[0]] == ["h1", "h2"]
    assert cap_hinted([solved], cap=0)[0] == []
    with pytest.raises(ValueError):
        cap_hinted([solved], cap=-1)


def test_a_trajectory_survives_its_json_form():
    t = Trajectory("i", (1, 0), "text", (3, 8), hinted=True)
    assert Trajectory.from_json(t.to_json()) == t


# Position-balanced selection: the preferred response (index 0) is shown first by (0, 1), second by (1, 0).
FIRST, SECOND = (0, 1), (1, 0)


def test_balanced_keeps_as_many_correct_trajectories_per_position_of_the_preferred_response():
    item = record("b", [sample([8, 3], FIRST, "f1"), sample([9, 2], SECOND, "s1"), sample([7, 2], SECOND, "s2"),
                        sample([3, 8], FIRST, "w")])  # fmt: skip
    chosen = select([item], balanced=True)
    assert [t.text for t in chosen.accepted] == ["f1", "s1"]
    assert (chosen.unbalanced, chosen.held, chosen.kept_items) == (1, 0, 1)


def test_balanced_sends_an_item_right_only_in_one_position_to_hinting_and_holds_its_correct_ones():
    biased = record("p", [sample([2, 9], FIRST), sample([8, 3], SECOND, "s1"), sample([9, 1], SECOND, "s2")])
    chosen = select([biased], balanced=True)
    assert chosen.accepted == [] and chosen.hint_needed == ["p"] and chosen.held == 2
    strict = select([biased])
    assert [t.text for t in strict.accepted] == ["s1", "s2"]  # the paper's rule keeps the position-biased ones


def test_balanced_counts_add_up_over_trajectories_and_items():
    items = [EASY, MIXED, HARD, record("p", [sample([2, 9], FIRST), sample([8, 3], SECOND), sample([9, 1], SECOND)])]
    c = select(items, balanced=True).counts()
    parts = c["accepted"] + c["wrong"] + c["unbalanced"] + c["held"] + c["too_easy_trajectories"]
    assert parts == c["trajectories"] == 11
    assert c["too_easy_items"] + c["hint_needed_items"] + c["kept_items"] == c["items"] == 4


def test_balanced_hinting_fills_only_the_missing_position_and_keeps_the_held_ones():
    plain = record("p", [sample([2, 9], FIRST), sample([8, 3], SECOND, "s1"), sample([9, 1], SECOND, "s2")])
    hinted = record("p", [sample([9, 1], FIRST, "h1"), sample([9, 1], SECOND, "h2"), sample([9, 2], FIRST, "h3")])
    kept, counts = cap_hinted([hinted], cap=1, plain={"p": plain})
    assert [(t.text, t.hinted) for t in kept] == [("h1", True), ("s1", False)]
    assert (counts["hinted_kept"], counts["plain_kept"], counts["hinted_unsolved_items"]) == (1, 1, 0)
    assert [t.text for t in cap_hinted([hinted], cap=2, plain={"p": plain})[0]] == ["h1", "s1", "h3", "s2"]


def test_balanced_hinting_within_the_cap_or_the_item_stays_unsolved():
    plain = record("u", [sample([2, 9], FIRST), sample([3, 8], SECOND)])  # no correct trajectory at all
    hinted = record("u", [sample([9, 1], FIRST, "h1"), sample([9, 1], SECOND, "h2")])
    assert cap_hinted([hinted], cap=1, plain={"u": plain})[0] == []  # two positions to fill, cap 1
    kept, counts = cap_hinted([hinted], cap=2, plain={"u": plain})
    assert [t.text for t in kept] == ["h1", "h2"] and counts["hinted_kept"] == 2
    one_sided = record("u", [sample([9, 1], FIRST, "h1"), sample([2, 9], SECOND)])
    assert cap_hinted([one_sided], cap=2, plain={"u": plain})[1]["hinted_unsolved_items"] == 1
