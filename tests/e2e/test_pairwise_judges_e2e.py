"""The A/B judge profiles on the real server, the real engine and the embedded model: format guidance
makes every sample parse, greedy (their default) and sampled. One server per profile (minutes on CPU)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import smoke_pairs
from tests.launcher import LaunchError, launch

pytestmark = pytest.mark.e2e

PROFILES = ("rm-r1-instruct", "rm-r1-distilled", "skywork-critic")
ITEMS = 4
K = 4
MAX_TOKENS = 96  # the embedded model is no RM-R1: a short budget keeps each guided line short


@pytest.fixture(scope="module", params=PROFILES)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    profile = request.param
    log: Path = tmp_path_factory.mktemp(profile) / "server.log"
    # --meta-rm none: the embedded meta RM rates DeepSeek-GRM samples, not these judges' outputs.
    args = ["--engine", "vllm", "--model", "embedded", "--judge", profile, "--meta-rm", "none"]
    try:
        with launch(args, log=log, start_timeout_s=900) as srv:
            yield profile, srv.url
    except LaunchError as exc:
        pytest.fail(str(exc))


@pytest.mark.parametrize("temperature", [None, 1.0])  # None: the profile's default, greedy
def test_every_guided_sample_parses(served: tuple[str, str], temperature: float | None, capsys) -> None:
    profile, url = served
    options = {"k": K, "max_tokens": MAX_TOKENS, "return_samples": True}
    if temperature is not None:
        options["temperature"] = temperature
    items = [
        {"messages": p["messages"], "responses": [p["chosen"], p["rejected"]], "seed": i, **options}
        for i, p in enumerate(smoke_pairs()[:ITEMS])
    ]
    r = httpx.post(f"{url}/v1/score", json={"items": items}, timeout=1800)
    assert r.status_code == 200, r.text
    body = r.json()
    samples = [s for item in body["items"] for s in item["samples"]]
    parsed = sum(s["status"] == "parsed" for s in samples)
    with capsys.disabled():
        print(f"\n{profile} temperature={temperature}: {parsed}/{len(samples)} samples parsed")
    assert len(samples) == ITEMS * K and parsed == len(samples)
    for item in body["items"]:
        assert [x["status"] for x in item["responses"]] == ["ok", "ok"]
        assert sum(x["mean_score"] for x in item["responses"]) == pytest.approx(1.0)  # a win rate each
        orders = sorted(tuple(s["permutation"]) for s in item["samples"])
        assert orders == [(0, 1)] * (K // 2) + [(1, 0)] * (K // 2)
        if temperature is None:  # greedy: the samples of one order are the same text
            for order in ((0, 1), (1, 0)):
                assert len({s["critique"] for s in item["samples"] if tuple(s["permutation"]) == order}) == 1
