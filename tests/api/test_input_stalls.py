"""Inputs that are cheap to send must not hold the event loop (review of issue #30, findings 2 and 3):
every other call, health checks included, waits while one call's text work runs."""

import pytest

from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from tests.api.conftest import as_python_json, running_app, with_stall

PROMPT = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
RUN = "<|im_end|>" * 200_000  # 2 MB: a policy that never stopped, or a crafted body


@pytest.mark.parametrize("path", ["/get_reward", "/v1/reward"])
async def test_a_rollout_ending_in_a_long_run_of_end_tokens_is_judged_without_stalling_the_server(path):
    if path == "/get_reward":
        body = {"query": [PROMPT + "red" + RUN], "prompts": [PROMPT]}
    else:
        body = {"prompt": PROMPT, "response": "red" + RUN}
    engine = FakeEngine()
    async with running_app(engine, k=1) as client:
        reply, stall = await with_stall(lambda: client.post(path, **as_python_json(body)))
    assert reply.status_code == 200, reply.text
    assert stall < 1.0  # was 13 to 18 s: the run was copied once per token
    assert shown_responses(engine.requests[0].prompt) == ["red"]  # the run is stripped, as before


def newline_judge(request: GenerationRequest) -> list[str]:
    """A free-text judgment whose criteria hold a run of 1,500 newlines (a degenerate small judge)."""
    return ["Specific Criteria: clarity" + "\n" * 1500 + "x\nScores: \\boxed{5, 5}"] * request.n


async def test_a_judgment_with_a_run_of_newlines_is_parsed_without_stalling_the_server():
    async with running_app(FakeEngine(newline_judge), k=1, format_guidance=False) as client:
        reply, stall = await with_stall(
            lambda: client.post("/v1/score", json={"query": "q", "responses": ["a", "b"], "seed": 0})
        )
    assert reply.status_code == 200 and [r["score"] for r in reply.json()["responses"]] == [5, 5]
    assert stall < 1.0  # was 4 s and more: the criteria regex backtracked cubically on the newlines
