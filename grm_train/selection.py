"""Rejective selection of SPCT (Liu et al. 2025, section 3.2): which sampled trajectories to train on (pure).

A trajectory is correct when its parsed scores put the preferred response strictly above every other
(:func:`meta_rm.labels.sample_is_correct`; an unparseable one is wrong). Per item, of its k trajectories:

* all correct: the item is too easy and rejected (nothing in it to learn);
* some correct: its correct trajectories are accepted, the wrong ones rejected;
* none correct: the item needs hinted sampling (:func:`cap_hinted`).

So ``accepted + wrong + too_easy_trajectories == k * items`` and
``too_easy_items + hint_needed_items + kept_items == items``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from meta_rm.labels import sample_is_correct


@dataclass(frozen=True)
class Trajectory:
    """One accepted trajectory: the order its sample saw the item's responses (their indices), its output."""

    item_id: str
    permutation: tuple[int, ...]
    text: str
    scores: tuple[int, ...]
    hinted: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Trajectory:
        return cls(d["item_id"], tuple(d["permutation"]), d["text"], tuple(d["scores"]), bool(d["hinted"]))


@dataclass(frozen=True)
class Selection:
    """The outcome of selecting over the sampled items (counts as in the module docstring)."""

    accepted: list[Trajectory]
    hint_needed: list[str]  # ids of the items with no correct trajectory
    items: int
    trajectories: int
    wrong: int
    unparseable: int  # of the wrong ones
    too_easy_items: int
    too_easy_trajectories: int
    kept_items: int

    def counts(self) -> dict[str, int]:
        """Every count, for the stage log."""
        return {
            "items": self.items,
            "trajectories": self.trajectories,
            "accepted": len(self.accepted),
            "wrong": self.wrong,
            "unparseable": self.unparseable,
            "too_easy_items": self.too_easy_items,
            "too_easy_trajectories": self.too_easy_trajectories,
            "hint_needed_items": len(self.hint_needed),
            "kept_items": self.kept_items,
        }


def _scores(sample: dict[str, Any]) -> tuple[int, ...] | None:
    if sample.get("status") != "parsed" or sample.get("scores") is None:
        return None
    return tuple(int(s) for s in sample["scores"])


def correct_samples(record: dict[str, Any]) -> list[Trajectory | None]:
    """Per sample of a sampling-cache record, its trajectory when correct, else None."""
    out: list[Trajectory | None] = []
    for s in record["samples"]:
        scores = _scores(s)
        ok = scores is not None and sample_is_correct(scores, record["preferred"])
        out.append(Trajectory(record["id"], tuple(s["permutation"]), s["text"], scores) if ok and scores else None)
    return out


def select(records: Sequence[dict[str, Any]]) -> Selection:
    """Rejective selection over the sampling-cache records of the items (each with its k samples)."""
    accepted: list[Trajectory] = []
    hint_needed: list[str] = []
    wrong = unparseable = easy_items = easy_trajectories = kept = total = 0
    for record in records:
        samples = record["samples"]
        correct = [t for t in correct_samples(record) if t is not None]
        total += len(samples)
        unparseable += sum(_scores(s) is None for s in samples)
        if samples and len(correct) == len(samples):
            easy_items += 1
            easy_trajectories += len(samples)
            continue
        wrong += len(samples) - len(correct)
        if correct:
            kept += 1
            accepted += correct
        else:
            hint_needed.append(record["id"])
    easy = (easy_items, easy_trajectories)
    return Selection(accepted, hint_needed, len(records), total, wrong, unparseable, *easy, kept)


def cap_hinted(records: Sequence[dict[str, Any]], cap: int) -> tuple[list[Trajectory], dict[str, int]]:
    """The correct trajectories of hinted sampling, at most ``cap`` per item (the first correct ones, in
    sample order), marked ``hinted``; and the counts: items, trajectories sampled, correct, kept, and
    items still without a correct trajectory.

    Raises:
        ValueError: if ``cap`` is negative.
    """
    if cap < 0:
        raise ValueError("the cap on hinted trajectories per item must be >= 0")
    kept: list[Trajectory] = []
    sampled = correct = unsolved = 0
    for record in records:
        good = [t for t in correct_samples(record) if t is not None]
        sampled += len(record["samples"])
        correct += len(good)
        unsolved += not good
        kept += [Trajectory(t.item_id, t.permutation, t.text, t.scores, hinted=True) for t in good[:cap]]
    counts = {
        "hinted_items": len(records),
        "hinted_trajectories": sampled,
        "hinted_correct": correct,
        "hinted_kept": len(kept),
        "hinted_unsolved_items": unsolved,
    }
    return kept, counts
