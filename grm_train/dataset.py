"""Training examples from accepted trajectories: the prompt the engine saw, the judge's output after it.

The prompt is the plain DeepSeek-GRM prompt (never the hinted one: a hinted trajectory is trained as if
the judge had found the answer alone) for the responses in the order the trajectory saw them, rendered
with the model's chat template exactly as the vLLM engine sends it (:func:`server.engines.chat_encoding.
encode_chat`: the same token ids, caller text never read as control tokens). The completion is the
trajectory's text followed by the EOS token, so the judge learns to stop. Only completion tokens carry
loss (TRL's ``completion_only_loss`` over a ``completion_mask``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from grm_train.selection import Trajectory
from server.engines.base import GenerationRequest
from server.engines.chat_encoding import encode_chat, render_chat
from server.pipeline.domain import Message
from server.pipeline.judges.deepseek import DeepSeekGRM


@dataclass(frozen=True)
class Example:
    """One supervised example: texts for reading, token ids for training."""

    item_id: str
    hinted: bool
    prompt: str
    completion: str
    prompt_ids: list[int]
    completion_ids: list[int]

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)

    def to_json(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "hinted": self.hinted,
            "prompt": self.prompt,
            "completion": self.completion,
            "tokens": self.length,
        }

    def features(self) -> dict[str, list[int]]:
        """What TRL's SFTTrainer takes as an already tokenized example (loss on the completion only)."""
        return {
            "input_ids": self.prompt_ids + self.completion_ids,
            "completion_mask": [0] * len(self.prompt_ids) + [1] * len(self.completion_ids),
        }


def judge_request(judge: DeepSeekGRM, record: dict[str, Any], permutation: tuple[int, ...]) -> GenerationRequest:
    """The engine request of the un-hinted prompt about ``record``'s item, responses shown in ``permutation``."""
    messages = tuple(Message(m["role"], m["content"]) for m in record["messages"])
    shown = [record["responses"][i] for i in permutation]
    prompt = judge.render(messages, shown)
    return GenerationRequest(
        request_id="train", prompt=prompt.user, system=prompt.system, messages=prompt.messages, raw=prompt.raw,
        n=1, temperature=0.0, top_p=1.0, max_tokens=1,
    )  # fmt: skip


def build_examples(
    tokenizer: Any, judge: DeepSeekGRM, records: dict[str, dict[str, Any]], trajectories: Iterable[Trajectory]
) -> list[Example]:
    """One example per trajectory (``records``: the sampling-cache records by item id).

    Raises:
        KeyError: for a trajectory whose item is not in ``records``.
        ValueError: if the tokenizer has no EOS token.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token to end the completions with")
    out = []
    for t in trajectories:
        request = judge_request(judge, records[t.item_id], t.permutation)
        text = render_chat(tokenizer, request)
        prompt_ids = encode_chat(tokenizer, request)
        completion_ids = list(tokenizer(t.text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
        out.append(Example(t.item_id, t.hinted, text, t.text, prompt_ids, [*completion_ids, eos]))
    return out


def within(examples: list[Example], max_seq_len: int) -> list[int]:
    """The indices (in order) of the examples of at most ``max_seq_len`` tokens; the longer ones are dropped,
    never truncated: a cut prompt or verdict would teach the judge to score what it did not read."""
    return [i for i, e in enumerate(examples) if e.length <= max_seq_len]
