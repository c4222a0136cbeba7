"""The run's log: one JSON line per stage (counts and wall seconds) in ``DIR/log.jsonl``, printed too."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class StageLog:
    """Appends each finished stage's record to ``path`` and prints it on one line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Times the block; the counts it puts in the yielded dict are logged when it ends without error."""
        counts: dict[str, Any] = {}
        started = time.perf_counter()
        yield counts
        record = {
            "stage": name,
            "wall_s": round(time.perf_counter() - started, 1),
            "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "counts": counts,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        shown = ", ".join(f"{k}={v}" for k, v in counts.items())
        print(f"grm-train: {name}: {record['wall_s']} s; {shown}", flush=True)

    def records(self) -> list[dict[str, Any]]:
        """Every stage record so far (a torn last line is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` to ``path`` atomically (a stage's output appears whole or not at all)."""
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file written by :func:`write_jsonl`."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
