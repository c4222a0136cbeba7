"""Soft votes on the real engine (vLLM on CPU, the embedded model): a soft call's samples carry the hard
scores they wrote and soft scores within the scale, read from vLLM's own logprobs, for deepseek-grm (the
session's server) and a pairwise A/B profile (skywork-critic, a server of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import smoke_pairs
from tests.launcher import LaunchError, launch

pytestmark = pytest.mark.e2e

ITEMS = 2
K = 4


def soft_body(max_tokens: int, **options: object) -> dict:
    items = [
        {"messages": p["messages"], "responses": [p["chosen"], p["rejected"]], "seed": i, "k": K,
         "max_tokens": max_tokens, "votes": "soft", "return_samples": True, **options}
        for i, p in enumerate(smoke_pairs()[:ITEMS])
    ]  # fmt: skip
    return {"items": items}


def check_samples(body: dict, low: float, high: float) -> list[dict]:
    """Every parsed sample's soft scores lie in [low, high] beside its hard integers; returns the samples."""
    samples = [s for item in body["items"] for s in item["samples"]]
    assert all(item["votes"] == "soft" for item in body["items"])
    parsed = [s for s in samples if s["status"] == "parsed"]
    assert parsed, samples
    for s in parsed:
        assert len(s["soft_scores"]) == len(s["scores"]) == 2
        assert all(low <= v <= high for v in s["soft_scores"]), s
        assert all(float(v).is_integer() and low <= v <= high for v in s["scores"]), s
        assert s["soft_source"] in ("sampled", "guided")
    # Format guidance writes every score as one of the scale's values: each one's logprobs can be read.
    assert [s for s in samples if s["status"] == "no_soft_score"] == []
    for item in body["items"]:
        for response in item["responses"]:
            kept = [
                v for s in item["samples"] if s["kept"] for c, v in zip(s["responses"], s["soft_scores"], strict=True)
                if c == response["index"]
            ]  # fmt: skip
            assert response["mean_score"] == pytest.approx(sum(kept) / len(kept))
    return parsed


def test_deepseek_grm_soft_votes_on_the_embedded_model(server_url: str, capsys) -> None:
    r = httpx.post(f"{server_url}/v1/score", json=soft_body(256), timeout=1800)
    assert r.status_code == 200, r.text
    parsed = check_samples(r.json(), 1, 10)
    with capsys.disabled():
        pairs = [(s["scores"], [round(v, 2) for v in s["soft_scores"]]) for s in parsed]
        print(f"\ndeepseek-grm hard vs soft: {pairs}")


@pytest.fixture(scope="module")
def skywork(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log: Path = tmp_path_factory.mktemp("skywork") / "server.log"
    args = ["--engine", "vllm", "--model", "embedded", "--judge", "skywork-critic", "--meta-rm", "none"]
    try:
        with launch(args, log=log, start_timeout_s=900) as srv:
            yield srv.url
    except LaunchError as exc:
        pytest.fail(str(exc))


def test_an_ab_judges_soft_votes_are_win_probabilities_on_the_embedded_model(skywork: str, capsys) -> None:
    r = httpx.post(f"{skywork}/v1/score", json=soft_body(96, temperature=1.0), timeout=1800)
    assert r.status_code == 200, r.text
    parsed = check_samples(r.json(), 0, 1)
    for s in parsed:
        assert sorted(s["scores"]) == [0, 1]
        assert sum(s["soft_scores"]) == pytest.approx(1.0, abs=1e-4)
    with capsys.disabled():
        print(
            f"\nskywork-critic hard vs soft: {[(s['scores'], [round(v, 3) for v in s['soft_scores']]) for s in parsed]}"
        )
