"""Deployment assets (deploy/, Dockerfile) checked offline with the real tools: promtool, kubectl."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str, package: str) -> str:
    """The path of a command-line tool the tests need; a clear failure when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: install {package} (`make test` and .ci/run do)")
    return path
