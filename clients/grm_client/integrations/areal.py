"""AReaL's ``reward_fn`` backed by grm-serve.

AReaL's RLVR workflows call ``reward_fn(prompt, completions, prompt_ids, completion_ids, **data)``
once per rollout through ``AsyncRewardWrapper``, which runs it in a process pool: so the function is
synchronous and must pickle. ``prompt`` is ``tokenizer.decode(input_ids)``, the chat-templated prompt
with its markup; ``completions`` is the decoded rollout, its end token included; ``data`` is the
dataset row (``answer``, ``messages``, ...). Each call goes to ``POST /v1/reward``: the server reads
the prompt's turns back, drops the end token and groups the rollouts of one prompt into shared GRM
prompts::

    from areal.workflow.rlvr import RLVRWorkflow
    from grm_client.integrations.areal import GRMRewardFn

    workflow = RLVRWorkflow(reward_fn=GRMRewardFn("http://grm:8000", reference_key="answer"), ...)

**Timeouts and workers.** ``RLVRWorkflow`` wraps the function in ``AsyncRewardWrapper(reward_fn)``
with its defaults (AReaL 1.0.4): a 15 s timeout per try, 3 retries, then 0 as the reward; and a pool
of ``max(cpu_count // gpu_count // 2, 1)`` worker processes shared by every wrapper, so a few calls at a
time (8 on a 128-core node with 8 GPUs). k samples of a 27B judge during a training step's burst take
longer than 15 s, and a GRM call spends its time waiting on the network, not on a core. Replace the
wrapper once the workflow is built::

    from areal.api.reward_api import AsyncRewardWrapper
    workflow.async_reward_fn = AsyncRewardWrapper(workflow.reward_fn, timeout_seconds=600, max_workers=64)

Pass the function itself, as above. Given an import path instead (``grm_reward_fn`` below),
``RLVRWorkflow`` builds its default wrapper again at its first episode, undoing the one set here.

A retry after a timeout sends the same body, which grm-serve's dedup attaches to the job already
running; the timed-out try keeps its worker until the server answers (a process cannot be
interrupted), so leave workers for the retries too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from grm_client.integrations._common import as_reference, default_base_url, shared_client


@dataclass(frozen=True)
class GRMRewardFn:
    """A picklable ``reward_fn``.

    Args:
        base_url: grm-serve's address (default ``$GRM_URL`` or ``http://127.0.0.1:8000``).
        reference_key: the dataset field holding the reference answer (None: judge without one). A row
            without that field is an error, not a row judged without its reference; a null value
            is no reference.
        reward: ``unit`` (the reward on [0, 1]) or ``server`` (on the scale ``--openrlhf-reward`` sets).
        missing: the reward of a rollout none of whose samples could be parsed.
    """

    base_url: str | None = None
    reference_key: str | None = "answer"
    reward: Literal["unit", "server"] = "unit"
    missing: float = 0.0

    def __post_init__(self) -> None:
        if self.reward not in ("unit", "server"):
            raise ValueError(f"reward must be 'unit' or 'server', got {self.reward!r}")

    def __call__(
        self, prompt: str, completions: str, prompt_ids: Any = None, completion_ids: Any = None, **data: Any
    ) -> float:
        if not isinstance(prompt, str) or not isinstance(completions, str):
            raise ValueError("AReaL's reward_fn takes the decoded prompt and completion as strings")
        label = None
        if self.reference_key is not None:
            if self.reference_key not in data:
                known = ", ".join(sorted(data)) or "none"
                raise ValueError(
                    f"no dataset field {self.reference_key!r} reached the reward function (fields: {known}); "
                    "name the reference answer's field in reference_key, or pass reference_key=None"
                )
            label = as_reference(data[self.reference_key])
        result = shared_client(self.base_url or default_base_url()).reward(prompt, completions, label=label)
        if result.unscored:
            return self.missing
        return result.score if self.reward == "unit" else result.reward


def grm_reward_fn(
    prompt: str, completions: str, prompt_ids: Any = None, completion_ids: Any = None, **data: Any
) -> float:
    """:class:`GRMRewardFn` configured from ``$GRM_URL`` and ``$GRM_REFERENCE_KEY`` (default ``answer``;
    empty for none), for AReaL configs that name the reward function by its import path."""
    reference_key = os.environ.get("GRM_REFERENCE_KEY", "answer") or None
    return GRMRewardFn(reference_key=reference_key)(prompt, completions, prompt_ids, completion_ids, **data)
