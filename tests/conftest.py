"""Shared test helpers: where the shared data lives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests expect ../shared beside the checkout")
    return path


def smoke_pairs() -> list[dict]:
    return [json.loads(line) for line in shared_file("data", "smoke.jsonl").read_text().splitlines() if line.strip()]
