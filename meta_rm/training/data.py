"""Preference data (the JSONL schema of ``../shared/data/README.md``) and a split by prompt.

A pair is ``prompt`` / ``messages`` plus ``chosen`` and ``rejected``. Best-of-N files may give
``responses`` with the index of the preferred one in ``preferred`` instead. The train/held-out split
hashes the conversation text, so two pairs that share a prompt always land on the same side.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from server.pipeline.domain import Message


class DataError(ValueError):
    """A preference file or record that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class PreferenceItem:
    """One judged item: a conversation, its responses and which one is preferred."""

    id: str
    source: str
    subset: str
    messages: tuple[Message, ...]
    responses: tuple[str, ...]
    preferred: int

    @property
    def prompt_key(self) -> str:
        """A stable hash of the conversation: the unit of the train/held-out split."""
        text = "\x1e".join(f"{m.role}\x1f{m.content.strip()}" for m in self.messages)
        return hashlib.sha256(text.encode()).hexdigest()


def _record_to_item(record: dict, where: str) -> PreferenceItem:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object")
    if "messages" in record:
        raw = record["messages"]
        if not isinstance(raw, list) or not raw:
            raise DataError(f"{where}: 'messages' must be a non-empty list")
        messages = tuple(Message(str(m["role"]), str(m["content"])) for m in raw)
    elif "prompt" in record:
        messages = (Message("user", str(record["prompt"])),)
    else:
        raise DataError(f"{where}: needs 'messages' or 'prompt'")
    if messages[-1].role != "user":
        raise DataError(f"{where}: the conversation must end with the user's turn")
    responses: tuple[str, ...]
    if "chosen" in record and "rejected" in record:
        responses, preferred = (
            (_text(record["chosen"], "chosen", where), _text(record["rejected"], "rejected", where)),
            0,
        )
    elif "responses" in record and "preferred" in record:
        raw_responses, preferred = record["responses"], record["preferred"]
        if not isinstance(raw_responses, list):
            raise DataError(f"{where}: 'responses' must be a list")
        responses = tuple(_text(r, "responses", where) for r in raw_responses)
        # A label must be an index: null, NaN, 1.5, true or "x" is a broken label, never read as some index.
        if isinstance(preferred, bool) or not isinstance(preferred, int):
            raise DataError(f"{where}: 'preferred' must be an integer index, got {json.dumps(preferred)}")
        if not 0 <= preferred < len(responses) or len(responses) < 2:
            raise DataError(f"{where}: 'preferred' must index one of at least two 'responses'")
    else:
        raise DataError(f"{where}: needs 'chosen' and 'rejected' (or 'responses' and 'preferred')")
    source = str(record.get("source", "unknown"))
    return PreferenceItem(
        id=str(record.get("id", where)),
        source=source,
        subset=str(record.get("subset", source)),
        messages=messages,
        responses=responses,
        preferred=preferred,
    )


def _text(value: object, field: str, where: str) -> str:
    """A response's text; null or a non-string is an error (``str(None)`` would be judged as "None")."""
    if not isinstance(value, str):
        raise DataError(f"{where}: '{field}' must hold strings, got {json.dumps(value)}")
    return value


def read_preferences(path: Path) -> list[PreferenceItem]:
    """All items of one JSONL file.

    Raises:
        DataError: for a line that is not JSON or lacks the fields above.
        OSError: if the file cannot be read.
    """
    items = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not JSON ({exc.msg})") from None
            try:
                items.append(_record_to_item(record, where))
            except (KeyError, TypeError) as exc:
                raise DataError(f"{where}: malformed record ({exc})") from None
    return items


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, recorded in artifacts and reports."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def heldout_side(item: PreferenceItem, heldout_fraction: float, salt: str = "grm-meta-rm") -> bool:
    """Whether the item's prompt falls on the held-out side (deterministic, by prompt hash)."""
    digest = hashlib.sha256(f"{salt}:{item.prompt_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < heldout_fraction


def select_per_source(items: Iterable[PreferenceItem], per_source: int | None, seed: int) -> list[PreferenceItem]:
    """Up to ``per_source`` items from each source, drawn with ``seed`` (all when None), sources interleaved."""
    by_source: dict[str, list[PreferenceItem]] = defaultdict(list)
    for item in items:
        by_source[item.source].append(item)
    drawn = []
    for source in sorted(by_source):
        group = list(by_source[source])
        random.Random(f"{seed}:{source}").shuffle(group)
        drawn.append(group if per_source is None else group[:per_source])
    # Interleave the sources so that a run cut short still covers all of them.
    return [item for round_ in zip_longest(*drawn) for item in round_ if item is not None]


def split_by_prompt(
    items: Sequence[PreferenceItem], heldout_fraction: float
) -> tuple[list[PreferenceItem], list[PreferenceItem]]:
    """(train, held-out); no prompt is on both sides."""
    train = [i for i in items if not heldout_side(i, heldout_fraction)]
    heldout = [i for i in items if heldout_side(i, heldout_fraction)]
    return train, heldout
