"""The Prometheus 2 profiles on the real engine and the embedded model: guided samples all parse.

The embedded model is no Prometheus, so its verdicts mean nothing; what this shows is that the format
guidance (one bounded feedback line, then ``[RESULT]`` and the verdict) holds vLLM's structured outputs
to a text the profile's parser reads, within the budget, through the raw (no chat template) prompt path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.launcher import LaunchError, launch

pytestmark = pytest.mark.e2e

K = 4
MAX_TOKENS = 128  # the bundled model on two CPU cores: the budget bounds the run (and the feedback line)
ITEM = {
    "query": "What is the capital of France?",
    "responses": ["Paris.", "The capital of France is Paris, on the Seine.", "Lyon.", "I don't know."],
    "k": K,
    "max_tokens": MAX_TOKENS,
    "return_samples": True,
}


@pytest.fixture(scope="module", params=["prometheus-2-absolute", "prometheus-2-relative"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    log: Path = tmp_path_factory.mktemp("server") / "server.log"
    # No meta RM: the embedded one was trained on DeepSeek-GRM samples of the embedded model.
    args = ["--engine", "vllm", "--model", "embedded", "--judge", request.param, "--meta-rm", "none"]
    try:
        with launch(args, log=log, start_timeout_s=900) as srv:
            yield request.param, srv.url
    except LaunchError as exc:
        pytest.fail(str(exc))


def test_every_guided_sample_parses_within_the_budget(server):
    judge, url = server
    r = httpx.post(f"{url}/v1/score", json=ITEM, timeout=900)
    assert r.status_code == 200, r.text
    body = r.json()
    samples = body["samples"]
    per_set = 1 if judge.endswith("absolute") else 2
    assert len(samples) == K * len(ITEM["responses"])  # 4 single responses, or 4 circular pairs, k each
    assert all(len(s["responses"]) == per_set for s in samples)
    assert [s for s in samples if s["status"] != "parsed"] == []
    assert all(s["generation_tokens"] <= MAX_TOKENS for s in samples)
    assert all(x["status"] == "ok" and x["votes"] > 0 for x in body["responses"])
    low, high = (1, 5) if per_set == 1 else (0, 1)
    assert all(low <= x["mean_score"] <= high for x in body["responses"])
