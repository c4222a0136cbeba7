"""The Nemotron GenRM profile on the real engine: vLLM on CPU with the embedded SmolLM2, whose ChatML
template renders the custom roles verbatim, guided by the profile's regex (vLLM's structured outputs
must accept it) into verdicts the profile parses, within the budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.launcher import LaunchError, RunningServer, launch

pytestmark = pytest.mark.e2e

MAX_TOKENS = 128  # the guided line is then at most 84 characters: every sample ends within the budget
K = 4
ITEM = {
    "query": "What is the capital of Italy?",
    "responses": ["Rome.", "<think>Italy... Rome.</think>\n\nIt is Rome.", "Milan."],
    "principles": ["Be correct.", "Be brief."],
    "k": K,
    "seed": 11,
    "return_samples": True,
}


@pytest.fixture(scope="module")
def nemotron_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log: Path = tmp_path_factory.mktemp("nemotron") / "server.log"
    args = ["--engine", "vllm", "--model", "embedded", "--judge", "nemotron-genrm", "--meta-rm", "none"]
    args += ["--max-tokens", str(MAX_TOKENS), "--pairing", "circular", "--aggregation", "tiebreaker"]
    try:
        with launch(args, log=log, start_timeout_s=900) as srv:
            yield RunningServer(srv.url, log)
    except LaunchError as exc:
        pytest.fail(str(exc))


def test_guided_verdicts_parse_and_every_response_gets_a_tiebreaker_vote(nemotron_server: RunningServer):
    r = httpx.post(f"{nemotron_server.url}/v1/score", json=ITEM, timeout=600)
    assert r.status_code == 200, r.text
    body = r.json()
    samples = body["samples"]
    assert len(samples) == 3 * K  # circular over 3 responses: 3 pairs, k samples each
    assert all(s["status"] == "parsed" and s["finish_reason"] == "stop" for s in samples), samples
    assert all(s["generation_tokens"] <= MAX_TOKENS for s in samples)
    for response in body["responses"]:
        assert response["status"] == "ok" and response["votes"] == 2 * K
        assert -1.5 <= response["mean_score"] <= 7.5  # a tiebreaker vote spans 1 - 2.5 .. 5 + 2.5
