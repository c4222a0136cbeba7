"""Rejective selection of SPCT (Liu et al. 2025, section 3.2): which sampled trajectories to train on (pure).

A trajectory is correct when its parsed scores put the preferred response strictly above every other
(:func:`meta_rm.labels.sample_is_correct`; an unparseable one is wrong). Per item, of its k trajectories:

* all correct: the item is too easy and rejected (nothing in it to learn);
* some correct: its correct trajectories are accepted, the wrong ones rejected;
* none correct: the item needs hinted sampling (:func:`cap_hinted`).

So ``accepted + wrong + too_easy_trajectories == k * items`` and
``too_easy_items + hint_needed_items + kept_items == items``.

**Position-balanced selection** (``balanced=True``, not in the paper): a judge that prefers one position
gets an item "right" mostly in the orders where the preferred response sits there, and training on those
trajectories teaches it that position. Balanced, an item is kept only when it has correct trajectories
with the preferred response in every position its samples showed it, and keeps the same number ``m`` (the
fewest any position has) at each: the training set then carries no position prior. The surplus correct
trajectories are counted ``unbalanced``; an item missing a position needs hinted sampling for it, and its
correct plain trajectories are ``held`` for the hint stage. Then
``accepted + wrong + unbalanced + held + too_easy_trajectories == k * items``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
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
    unbalanced: int = 0  # balanced only: correct trajectories beyond the fewest any position has
    held: int = 0  # balanced only: correct trajectories of items sent to hinting (the hint stage keeps them)

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
            "unbalanced": self.unbalanced,
            "held": self.held,
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


def slot(t: Trajectory, preferred: int) -> int:
    """The position (0 = shown first) at which the trajectory saw the preferred response."""
    return t.permutation.index(preferred)


def slots_shown(record: dict[str, Any]) -> list[int]:
    """The positions at which the item's samples showed the preferred response (sorted)."""
    return sorted({list(s["permutation"]).index(record["preferred"]) for s in record["samples"]})


def balanced_take(by_slot: dict[int, list[Trajectory]], slots: Sequence[int], m: int) -> list[Trajectory]:
    """``m`` trajectories of each slot, interleaved slot by slot (so no slot comes first in the set)."""
    return [by_slot[s][i] for i in range(m) for s in slots]


def _by_slot(trajectories: Sequence[Trajectory], preferred: int) -> dict[int, list[Trajectory]]:
    out: dict[int, list[Trajectory]] = {}
    for t in trajectories:
        out.setdefault(slot(t, preferred), []).append(t)
    return out


def select(records: Sequence[dict[str, Any]], *, balanced: bool = False) -> Selection:
    """Rejective selection over the sampling-cache records of the items (each with its k samples);
    ``balanced`` keeps as many correct trajectories per position of the preferred response (module
    docstring)."""
    accepted: list[Trajectory] = []
    hint_needed: list[str] = []
    wrong = unparseable = easy_items = easy_trajectories = kept = total = unbalanced = held = 0
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
        if not balanced:
            if correct:
                kept += 1
                accepted += correct
            else:
                hint_needed.append(record["id"])
            continue
        slots, by_slot = slots_shown(record), _by_slot(correct, record["preferred"])
        m = min(len(by_slot.get(s, [])) for s in slots) if slots else 0
        if m:
            kept += 1
            accepted += balanced_take(by_slot, slots, m)
            unbalanced += len(correct) - m * len(slots)
        else:
            hint_needed.append(record["id"])
            held += len(correct)
    easy = (easy_items, easy_trajectories)
    return Selection(accepted, hint_needed, len(records), total, wrong, unparseable, *easy, kept, unbalanced, held)


def rebalance(trajectories: Sequence[Trajectory], records: dict[str, dict[str, Any]]) -> list[int]:
    """The indices (in order) of ``trajectories`` that keep a balanced set balanced after some of it was
    dropped (the train stage's length cut): per item, the first ``m`` at each position its plain samples
    (``records``, by id) showed the preferred response in, ``m`` the fewest any position still has; an item
    left without one position loses the rest.
    """
    at: dict[str, dict[int, list[int]]] = {}
    for i, t in enumerate(trajectories):
        at.setdefault(t.item_id, {}).setdefault(slot(t, records[t.item_id]["preferred"]), []).append(i)
    keep: list[int] = []
    for item_id, by_slot in at.items():
        slots = slots_shown(records[item_id])
        m = min(len(by_slot.get(s, [])) for s in slots)
        keep += [i for s in slots for i in by_slot.get(s, [])[:m]]
    return sorted(keep)


def cap_hinted(
    records: Sequence[dict[str, Any]], cap: int, plain: dict[str, dict[str, Any]] | None = None
) -> tuple[list[Trajectory], dict[str, int]]:
    """The correct trajectories of hinted sampling, at most ``cap`` per item (the first correct ones, in
    sample order), marked ``hinted``; and the counts: items, trajectories sampled, correct, kept, and
    items still without a correct trajectory.

    With ``plain`` (the items' plain sampling records by id), selection is position-balanced
    (:func:`complete_balanced`): the kept list also carries the held plain trajectories of each item the
    hints complete (counted ``plain_kept``), and an item is unsolved unless every position is filled.

    Raises:
        ValueError: if ``cap`` is negative.
    """
    if cap < 0:
        raise ValueError("the cap on hinted trajectories per item must be >= 0")
    kept: list[Trajectory] = []
    sampled = correct = unsolved = hinted_kept = 0
    for record in records:
        good = [replace(t, hinted=True) for t in correct_samples(record) if t is not None]
        sampled += len(record["samples"])
        correct += len(good)
        if plain is None:
            unsolved += not good
            mine = good[:cap]
            hinted_kept += len(mine)
        else:
            mine, n_hinted = complete_balanced(plain[record["id"]], good, cap)
            unsolved += not mine
            hinted_kept += n_hinted
        kept += mine
    counts = {
        "hinted_items": len(records),
        "hinted_trajectories": sampled,
        "hinted_correct": correct,
        "hinted_kept": hinted_kept,
        "hinted_unsolved_items": unsolved,
    }
    if plain is not None:
        counts["plain_kept"] = len(kept) - hinted_kept
    return kept, counts


def complete_balanced(plain: dict[str, Any], hinted: Sequence[Trajectory], cap: int) -> tuple[list[Trajectory], int]:
    """Balanced selection of a hint-needed item: its correct plain trajectories (of its plain sampling
    record) at the positions that have some, its correct ``hinted`` ones (at most ``cap`` in all) at the
    positions that have none, ``m`` per position.

    Returns:
        The kept trajectories (hinted ones marked) and how many of them are hinted; ``[], 0`` when some
        position stays without a correct trajectory.
    """
    preferred, slots = plain["preferred"], slots_shown(plain)
    mine = _by_slot([t for t in correct_samples(plain) if t is not None], preferred)
    theirs = _by_slot(hinted, preferred)
    missing = [s for s in slots if not mine.get(s)]
    if not missing or not cap // len(missing):
        return [], 0
    m = min([len(mine[s]) for s in slots if s not in missing] + [len(theirs.get(s, [])) for s in missing])
    m = min(m, cap // len(missing))
    if not m:
        return [], 0
    return balanced_take(mine | {s: theirs[s] for s in missing}, slots, m), m * len(missing)
