"""Which items an evaluation covers: per file, a seeded draw of ``limit`` items, minus skipped ids."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from meta_rm.training.data import DataError, PreferenceItem, read_preferences


def read_ids(path: Path) -> set[str]:
    """The ``id`` fields of a JSONL file (a preference file, a sample cache, a report's item list)."""
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "id" in record:
            ids.add(str(record["id"]))
    return ids


def item_chars(item: PreferenceItem) -> int:
    """The characters an item puts into a GRM prompt: its conversation and its responses."""
    return sum(len(m.content) for m in item.messages) + sum(len(r) for r in item.responses)


def select(
    paths: Sequence[Path], limit: int | None, seed: int, skip: set[str], *, max_chars: int | None = None
) -> list[tuple[Path, PreferenceItem]]:
    """Items of every file (in file order); with ``limit``, a seeded draw of that many per file; with
    ``max_chars``, only items of at most that many characters (:func:`item_chars`) are drawn.

    Raises:
        meta_rm.training.data.DataError: for a malformed file, or an id found twice.
    """
    chosen: list[tuple[Path, PreferenceItem]] = []
    seen: dict[str, str] = {}  # id -> where it was first read
    for path in paths:
        items = [i for i in read_preferences(path) if i.id not in skip]
        for i in items:  # caches, reports and selections are keyed by id: a second item would be lost
            if i.id in seen:
                raise DataError(f"{path.name}: id {i.id!r} is also in {seen[i.id]}; ids must be unique across --data")
            seen[i.id] = path.name
        if max_chars is not None:
            items = [i for i in items if item_chars(i) <= max_chars]
        if limit is not None:
            random.Random(f"{seed}:{path.name}").shuffle(items)
            items = items[:limit]
        chosen.extend((path, i) for i in items)
    return chosen
