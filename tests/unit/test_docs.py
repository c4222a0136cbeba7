"""README and docs/: no placeholder where a figure should be, and every relative link resolves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), ROOT / "clients/README.md", ROOT / "deploy/README.md"])

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")
# A placeholder left for a figure: an all-capitals word with underscores (SHARING_TIME), or a note.
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b|\b(?:TODO|TBD|FIXME|XXX)\b|\?\?\?")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside code blocks and code spans (where environment variables are written)."""
    return CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = CODE.sub(lambda m: m.group(0)[1:-1], heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)} | {"top"}


def test_the_pages_are_found():
    assert len(PAGES) >= 10 and all(p.exists() for p in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_placeholder_stands_where_a_figure_should_be(page: Path):
    found = [
        (m.group(0), prose(page.read_text())[max(0, m.start() - 40) : m.end()])
        for m in PLACEHOLDER.finditer(prose(page.read_text()))
    ]
    assert not found, f"placeholders in {page.name}: {found}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (fragment and file.suffix == ".md" and fragment not in anchors(file)):
            broken.append(target)
    assert not broken, f"broken links in {page.name}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_json_example_is_json(page: Path):
    """A JSON block shows a real answer or body: it parses (a placeholder for a figure would not)."""
    for block in re.findall(r"^```json\n(.*?)^```", page.read_text(), re.M | re.S):
        json.loads(block)


def test_the_checks_catch_what_they_look_for(tmp_path: Path):
    assert PLACEHOLDER.search(prose("| sharing | **300 cases**, all pass, SHARING_TIME |"))
    assert not PLACEHOLDER.search(prose("Set `GRM_API_KEYS=a,b` and run."))
    assert slug("## Adaptive k: stop sampling when the vote is decided".lstrip("# ")) == (
        "adaptive-k-stop-sampling-when-the-vote-is-decided"
    )
    assert slug("RL trainers' calls") == "rl-trainers-calls"
