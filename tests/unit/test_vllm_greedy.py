"""Greedy requests on the vLLM engine path: vLLM refuses n > 1 at temperature 0, which the A/B judges'
upstream sampling is (RM-R1, Skywork-Critic), so k samples of one order are asked for once and repeated."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from server.engines.base import GenerationRequest
from server.engines.vllm import generate_ids

pytest.importorskip("vllm")


class StubLLM:
    """An ``AsyncLLM`` stand-in that builds vLLM's real ``SamplingParams`` (so vLLM's own checks run)
    and answers each of its ``n`` samples with a distinct text."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    async def generate(self, prompt, params, request_id):
        self.sent.append(params.n)
        outputs = [SimpleNamespace(text=f"sample {i}", finish_reason="stop", token_ids=[1, 2]) for i in range(params.n)]
        yield SimpleNamespace(outputs=outputs)


def request(n: int, temperature: float) -> GenerationRequest:
    return GenerationRequest("r", "prompt", n=n, temperature=temperature, top_p=1.0, max_tokens=64)


def test_a_greedy_request_for_k_samples_asks_vllm_for_one_and_repeats_it():
    llm = StubLLM()
    result = asyncio.run(generate_ids(llm, [1, 2, 3], request(4, 0.0)))
    assert llm.sent == [1]
    assert [c.text for c in result.completions] == ["sample 0"] * 4


def test_a_sampled_request_asks_vllm_for_all_k():
    llm = StubLLM()
    result = asyncio.run(generate_ids(llm, [1, 2, 3], request(4, 0.7)))
    assert llm.sent == [4]
    assert [c.text for c in result.completions] == [f"sample {i}" for i in range(4)]
