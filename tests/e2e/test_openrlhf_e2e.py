"""OpenRLHF's own remote-RM request path against the real server.

OpenRLHF 0.11.2's ``SingleTurnAgentExecutor`` (installed without its dependencies) tokenizes the
chat-templated prompt, asks its engine for one rollout, decodes prompt + rollout with
``skip_special_tokens=False`` and posts that one row to ``/get_reward`` with its label. Here its engine
is a stub that returns a fixed answer's token ids (the policy is not under test); the tokenizer is a
real one (the embedded SmolLM2's, ChatML). Eight rollouts of one prompt run concurrently, as in a
GRPO step.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from server.config import Settings
from server.engines.model_files import ensure_embedded_model

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France? Answer in one word."
ANSWERS = ["Paris.", "Lyon.", "Paris, of course.", "Marseille.", "It is Paris.", "Nice.", "paris", "Berlin."]


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ensure_embedded_model(Settings().cache_dir)), local_files_only=True)


class StubEngine:
    """Answers OpenRLHF's ``llm_engine.generate`` with a fixed rollout ending in EOS."""

    def __init__(self, tok, answer: str) -> None:
        self.ids = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]

    async def generate(self, prompt_token_ids, params, multi_modal_data=None):
        out = SimpleNamespace(token_ids=self.ids, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[out])


def test_openrlhf_one_row_calls_are_grouped_read_as_plain_turns_and_judged_with_their_label(grm_server):
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    tok = tokenizer()
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.startswith("<|im_start|>system\n")  # the policy's markup, as OpenRLHF sends it
    executor = SingleTurnAgentExecutor(remote_rm_url=f"{grm_server.url}/get_reward")
    params = SimpleNamespace(max_tokens=32, logprobs=None)
    logged_before = len(grm_server.records("GRM prompt"))

    async def rollouts():
        calls = [executor.execute(prompt, "Paris", params, 512, tok, StubEngine(tok, a)) for a in ANSWERS]
        return await asyncio.gather(*calls)

    outputs = asyncio.run(rollouts())
    assert all(o["reward"] is not None for o in outputs), "a reward call failed (OpenRLHF logged it)"
    # Each call's answer holds one row: OpenRLHF keeps the lists as they come.
    assert all(len(o["reward"]) == 1 and 0.0 <= o["reward"][0] <= 1.0 for o in outputs)
    sizes = [o["extra_logs"]["grm_group_size"] for o in outputs]
    assert all(size[0] > 1 for size in sizes), sizes  # one-row calls shared GRM prompts
    prompts = [r["prompt"] for r in grm_server.records("GRM prompt")[logged_before:]]
    assert prompts, "the session server logs GRM prompts at DEBUG"
    for text in prompts:
        assert "<|im_start|>" not in text and "<|im_end|>" not in text, text
        assert "#### Reference Answer ####\nParis\n" in text
        assert "User: " + QUESTION in text  # the policy's default system prompt stays, as a plain turn
    shown = {a for text in prompts for a in ANSWERS if f"\n{a}\n[The End of Response" in text}
    assert shown == set(ANSWERS)  # every rollout was judged, without its EOS token
