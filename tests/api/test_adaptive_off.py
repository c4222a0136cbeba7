"""``adaptive: "off"`` (the default) answers exactly as grm-serve did before adaptive k existed.

``tests/data/adaptive_off_golden.json`` holds the answers of the tree before adaptive k (commit
1d0a192) to a fixed set of seeded calls on a seeded fake judge (votes and parse failures drawn from
each sample's seed, a meta RM on some calls). Today's answers must match them field for field; only
the fields added with adaptive k (``k_used``, ``stop_reason``, ``rounds``, ``normalized_score``, the rerank's
``meta.grm`` and ``/get_reward``'s ``grm_k_used``) and with judge profiles (``/v1/score``'s ``scale``, the
judge's vote scale, ``judge_mode`` and each batch item's own ``template``;
:func:`test_the_fields_judge_profiles_added` pins their deepseek-grm values) and with soft votes (``votes``,
:func:`test_the_votes_field_says_hard`) may be new. Regenerate only on purpose:
``GRM_WRITE_GOLDEN=1 pytest tests/api/test_adaptive_off.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from meta_rm.base import Trajectory
from meta_rm.fake import FakeMetaRM
from server.engines.base import Completion, GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from tests.api.conftest import running_app

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "adaptive_off_golden.json"
# Fields that adaptive k added to the answers: not in the golden file, ignored when comparing.
NEW_FIELDS = {"k_used", "stop_reason", "rounds", "normalized_score", "grm", "grm_k_used", "scale", "judge_mode"}
# Soft votes added the answers' ``votes`` ("hard" or "soft"), not the responses' own ``votes`` (a count).
VOTES_MODE = "votes"


def _draw(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def seeded_judge(request: GenerationRequest) -> list[str | Completion]:
    """Sample ``i`` of a request behaves as vLLM's child ``i``: drawn from ``seed + i``; one in seven
    samples is unparseable."""
    shown = shown_responses(request.prompt)
    out: list[str | Completion] = []
    for i in range(request.n):
        seed = (request.seed or 0) + i
        if _draw(seed, "parse") % 7 == 0:
            out.append(Completion("Specific Criteria: rambling without scores", "length", 40))
            continue
        votes = [1 + _draw(seed, r, len(r)) % 10 for r in shown]
        out.append(
            f"Specific Criteria: seeded.\nAnalysis: seed {seed}.\nScores: \\boxed{{{', '.join(map(str, votes))}}}"
        )
    return out


def _meta_rule(t: Trajectory) -> float:
    return float(_draw(t.output, t.responses) % 1000)


CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("plain", "/v1/score", {"query": "Is the sky blue?", "responses": ["Yes.", "No, it is green."], "k": 8, "seed": 3}),
    ("three", "/v1/score", {"query": "Pick one", "responses": ["a", "bb", "ccc"], "k": 5, "seed": 11,
                            "return_samples": True}),
    ("split", "/v1/score", {"query": "Many", "responses": [f"answer {i}" * (i + 1) for i in range(6)], "k": 6,
                            "seed": 5}),
    ("batch", "/v1/score", {"items": [{"query": "q1", "responses": ["x", "y"], "seed": 1},
                                      {"query": "q2", "responses": ["only one"], "k": 3, "seed": 2}]}),
    ("rerank", "/v1/rerank", {"query": "Capital?", "documents": [f"doc {i}" for i in range(7)], "top_n": 3,
                              "k": 4, "seed": 9}),
    ("reward", "/get_reward", {"query": ["p1 r1", "p1 r2", "p2 r3"], "prompts": ["p1", "p1", "p2"],
                               "reward": "raw"}),
    ("reward-mean", "/get_reward", {"query": ["p1 r1", "p1 r2"], "prompts": ["p1", "p1"], "reward": "mean"}),
]  # fmt: skip
META_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("meta", "/v1/score", {"query": "Meta?", "responses": ["one", "two", "three"], "k": 8, "seed": 4,
                           "return_samples": True}),
    ("meta-k", "/v1/score", {"query": "Meta?", "responses": ["one", "two"], "k": 6, "k_meta": 2, "seed": 7}),
]  # fmt: skip


def _strip(value: Any, *, in_batch: bool = False) -> Any:
    if isinstance(value, dict):
        dropped = NEW_FIELDS | {"timings", "id"} | ({"template"} if in_batch else set())
        kept = {k: v for k, v in value.items() if k not in dropped and not (k == VOTES_MODE and isinstance(v, str))}
        return {k: _strip(v, in_batch=k == "items") for k, v in kept.items()}
    if isinstance(value, list):
        return [_strip(v, in_batch=in_batch) for v in value]
    return value


async def _answers(raw: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    settings = {"group_window_s": 0, "max_group_size": 4, "dedup_identical_requests": False}
    for calls, meta_rm in ((CALLS, None), (META_CALLS, FakeMetaRM(_meta_rule))):
        async with running_app(FakeEngine(seeded_judge), meta_rm=meta_rm, **settings) as client:
            for name, path, body in calls:
                r = await client.post(path, json=body)
                assert r.status_code == 200, r.text
                out[name] = _strip(r.json())
                if raw is not None:
                    raw[name] = r.json()
    return out


async def test_off_is_byte_identical_to_before_adaptive_k() -> None:
    answers = await _answers()
    if os.environ.get("GRM_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert set(answers) == set(golden)
    for name in golden:
        assert answers[name] == golden[name], name


async def test_the_fields_judge_profiles_added() -> None:
    """deepseek-grm's answers say its vote scale, 1..10, and mode, group; a batch item names its own prompt version."""
    raw: dict[str, Any] = {}
    await _answers(raw)
    for name, path, _ in CALLS + META_CALLS:
        if path == "/v1/score":
            assert raw[name]["scale"] == [1, 10], name
            assert raw[name]["judge_mode"] == "group", name
    templates = [i["template"] for i in raw["batch"]["items"]]
    assert templates == [raw["batch"]["template"]] * 2 == ["deepseek-grm-default-v1"] * 2
    assert raw["rerank"]["meta"]["grm"]["scale"] == [1, 10]


async def test_the_votes_field_says_hard() -> None:
    """Soft votes added one field, ``votes``: every answer of the default (hard votes) says ``hard``, and
    no sample carries ``soft_scores`` or ``soft_source``."""
    raw: dict[str, Any] = {}
    await _answers(raw)
    for name, path, _ in CALLS + META_CALLS:
        answer = raw[name]
        if path == "/v1/score":
            for item in answer.get("items", [answer]):
                assert item["votes"] == "hard", name
                for sample in item.get("samples") or []:
                    assert "soft_scores" not in sample and "soft_source" not in sample, name
        elif path == "/get_reward":
            assert answer["votes"] == "hard", name
        else:
            assert answer["meta"]["grm"]["votes"] == "hard", name
