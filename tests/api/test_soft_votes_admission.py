"""Admission books a soft call's scoring passes (issue #32's review), through the app."""

from __future__ import annotations

import math
import re
from pathlib import Path

from server.engines.fake import FakeEngine
from server.engines.fake_tokens import certain
from server.pipeline.domain import Message
from server.pipeline.scoring import ScoreSpec
from tests.api.conftest import running_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "judges"
_DIGIT = re.compile(r" ?\d")


def percent_judge(tmp_path: Path) -> Path:
    """The example 1..10 judge file on 0..100 (two-digit values: most first digits open), unguided."""
    text = (EXAMPLES / "pointwise-1-10.yaml").read_text().replace("scale: [1, 10]", "scale: [0, 100]")
    path = tmp_path / "percent.yaml"
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("guidance:")))
    return path


def unsure_of_digits(previous: str, written: str | None) -> dict[str, float]:
    """A judge that spreads 0.45 of a score's first digit over the other nine digits (as a real judge's
    top-20 on a 0..100 scale does), and is unsure what follows a digit."""
    if written is not None and _DIGIT.fullmatch(written) and not _DIGIT.fullmatch(previous):
        probs = {f"{written[:-1]}{d}": 0.05 for d in range(10)}
        probs[written] = 0.55
        return {t: math.log(p) for t, p in probs.items()}
    if _DIGIT.fullmatch(previous):
        after = (
            {"\n": 0.5, "0": 0.25, "5": 0.25} if written is None else {written: 0.5, "\n": 0.2, "0": 0.15, "5": 0.15}
        )
        return {t: math.log(p) for t, p in after.items()}
    return certain(previous, written)


async def test_admission_books_a_soft_calls_scoring_passes(tmp_path: Path) -> None:
    """Admission (and the 429 it answers) books a soft call's scoring passes (each one sequence) on top
    of its k samples per judged set: on a 0..100 judge file, where a sample would take ~9 passes
    uncapped, the sequences the call runs stay within what admission booked."""
    counter = iter(range(10**6))
    engine = FakeEngine(lambda r: [f"Reason {next(counter)}.\nScore: 57" for _ in range(r.n)],
                        logprob_model=unsure_of_digits)  # fmt: skip
    body = {"query": "q", "responses": ["a", "b"], "k": 4, "seed": 1, "votes": "soft"}
    async with running_app(engine, judge_file=percent_judge(tmp_path), group_window_s=0) as client:
        service = client._transport.app.state.service  # type: ignore[attr-defined]
        spec = ScoreSpec(messages=(Message("user", "q"),), responses=("a", "b"), k=4, temperature=0.7, top_p=0.95,
                         max_tokens=512, seed=1, votes="soft")  # fmt: skip
        booked, _ = service.plan([spec], [False])
        r = await client.post("/v1/score", json=body)
    assert r.status_code == 200
    sequences = sum(q.n for q in engine.requests)
    assert sequences <= booked, f"admission booked {booked} samples; the call ran {sequences} engine sequences"
