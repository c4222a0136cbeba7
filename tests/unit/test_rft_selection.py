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
