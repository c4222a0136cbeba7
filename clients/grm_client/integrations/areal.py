"""AReaL's ``reward_fn`` backed by grm-serve.

AReaL's RLVR workflows call ``reward_fn(prompt, completions, prompt_ids, completion_ids, **data)``
once per rollout through ``AsyncRewardWrapper``, which runs it in a process pool: so the function is
synchronous and must pickle. ``prompt`` is ``tokenizer.decode(input_ids)``, the chat-templated prompt
with its markup; ``completions`` is the decoded rollout, its end token included; ``data`` is the
dataset row (``answer``, ``messages``, ...). Each call goes to ``POST /v1/reward``: the server reads
the prompt's turns back, drops the end token and groups the rollouts of one prompt into shared GRM
prompts.

**Use it through** :class:`grm_client.integrations.areal_workflow.GRMRLVRWorkflow`, named by its
class path with its arguments in ``workflow_kwargs`` (docs/trainers.md)::

    trainer.train(
        workflow="grm_client.integrations.areal_workflow.GRMRLVRWorkflow",
        workflow_kwargs=dict(
            base_url="http://grm:8000",
            reference_key="answer",
            reward_timeout_s=600,
            gconfig=config.gconfig,
            tokenizer=config.tokenizer_path,
        ),
    )

``RLVRWorkflow`` wraps its reward function in ``AsyncRewardWrapper(reward_fn)`` with AReaL 1.0.4's
defaults: a 15 s timeout per try, 3 retries, then 0 as the reward; k samples of a large judge during a
training step's burst take longer. A wrapper replaced on a workflow instance does not reach the
rollout workers in AReaL's default single-controller mode: the controller sends the workflow's class
path and ``workflow_kwargs``, and each worker builds the workflow anew from them. The workflow class
builds its own wrapper from its arguments, so the timeout travels with them.

A retry after a timeout sends the same body, which grm-serve's dedup attaches to the job already
running; the timed-out try keeps its worker until the server answers (a process cannot be
interrupted), so leave workers for the retries too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from grm_client.integrations._common import as_reference, default_api_key, default_base_url, shared_client


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
        api_key: the key of a grm-serve started with ``GRM_API_KEYS`` (default ``$GRM_API_KEY`` in the
            process that runs the call; none when unset). Left out of the repr.
    """

    base_url: str | None = None
    reference_key: str | None = "answer"
    reward: Literal["unit", "server"] = "unit"
    missing: float = 0.0
    api_key: str | None = field(default=None, repr=False, kw_only=True)

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
        client = shared_client(self.base_url or default_base_url(), self.api_key or default_api_key())
        result = client.reward(prompt, completions, label=label)
        if result.unscored:
            return self.missing
        return result.score if self.reward == "unit" else result.reward


def grm_reward_fn(
    prompt: str, completions: str, prompt_ids: Any = None, completion_ids: Any = None, **data: Any
) -> float:
    """:class:`GRMRewardFn` configured from ``$GRM_URL``, ``$GRM_API_KEY`` and ``$GRM_REFERENCE_KEY``
    (default ``answer``; empty for none), for workflows that name the reward function by its import path.

    ``RLVRWorkflow`` given an import path wraps it with AReaL's 15 s default: use
    :class:`~grm_client.integrations.areal_workflow.GRMRLVRWorkflow` instead.
    """
    reference_key = os.environ.get("GRM_REFERENCE_KEY", "answer") or None
    return GRMRewardFn(reference_key=reference_key)(prompt, completions, prompt_ids, completion_ids, **data)
