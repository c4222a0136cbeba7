"""AReaL's RLVR workflow judged by grm-serve, built whole from the arguments AReaL ships to its workers.

The one grm-client module that imports its framework: AReaL imports it, by class path, in its own
processes. In AReaL's default single-controller mode (any run not started through its launchers,
``scheduler.type=local`` included) the controller sends each rollout worker the workflow's class path
and ``workflow_kwargs``, and the worker builds the workflow from them (AReaL 1.0.4's
``RolloutController.submit`` and ``RemoteInfEngine._resolve_workflow``): a workflow instance, or a
reward wrapper replaced on one, never reaches the workers. So this class takes everything as plain
arguments, the reward timeout included, and builds the GRM reward function and its
``AsyncRewardWrapper`` itself::

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

The same lines work under AReaL's launchers (SPMD mode), where the engine builds the workflow from
the same two arguments.
"""

from __future__ import annotations

from typing import Any, Literal

from areal.api.reward_api import AsyncRewardWrapper
from areal.workflow.rlvr import RLVRWorkflow

from grm_client.integrations.areal import GRMRewardFn

DEFAULT_REWARD_TIMEOUT_S = 600.0  # k samples of a large judge in a training step's burst take minutes, not 15 s
DEFAULT_REWARD_MAX_WORKERS = 64  # a GRM call waits on the network, not on a core


class GRMRLVRWorkflow(RLVRWorkflow):
    """``RLVRWorkflow`` whose reward is grm-serve's, with a reward timeout a GRM can meet.

    Args:
        gconfig: AReaL's generation hyperparameters (``config.gconfig``).
        tokenizer: the policy's tokenizer or its path (``config.tokenizer_path``).
        base_url: grm-serve's address (default ``$GRM_URL`` or ``http://127.0.0.1:8000``, read in the
            worker).
        api_key: the key of a grm-serve started with ``GRM_API_KEYS`` (default ``$GRM_API_KEY``, read in
            the worker; AReaL's local scheduler starts its workers with the controller's environment).
        reference_key: the dataset field holding the reference answer (None: judge without one).
        reward: ``unit`` (the reward on [0, 1]) or ``server`` (the scale ``--openrlhf-reward`` sets).
        missing: the reward of a rollout none of whose samples could be parsed.
        reward_timeout_s: seconds per try before AReaL's wrapper retries (its own default is 15).
        reward_max_workers: processes of the wrapper's pool (AReaL's default is
            ``cpu_count // gpu_count // 2``, 8 on a 128-core node with 8 GPUs).
        reward_max_retries: the wrapper's retries after a timeout; after the last, AReaL rewards 0.
        **rlvr_kwargs: ``RLVRWorkflow``'s other arguments (``enable_thinking``, ``get_input_ids_fn``,
            ``data_extract_prompt_fn``).

    Raises:
        ValueError: for a ``reward`` other than ``unit`` or ``server``, or a timeout or pool size below 1.
    """

    def __init__(
        self,
        gconfig: Any,
        tokenizer: Any,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        reference_key: str | None = "answer",
        reward: Literal["unit", "server"] = "unit",
        missing: float = 0.0,
        reward_timeout_s: float = DEFAULT_REWARD_TIMEOUT_S,
        reward_max_workers: int = DEFAULT_REWARD_MAX_WORKERS,
        reward_max_retries: int = 3,
        **rlvr_kwargs: Any,
    ) -> None:
        if reward_timeout_s <= 0 or reward_max_workers < 1 or reward_max_retries < 0:
            raise ValueError("reward_timeout_s must be > 0, reward_max_workers >= 1 and reward_max_retries >= 0")
        reward_fn = GRMRewardFn(base_url, reference_key, reward, missing, api_key=api_key)
        super().__init__(reward_fn=reward_fn, gconfig=gconfig, tokenizer=tokenizer, **rlvr_kwargs)
        # RLVRWorkflow has just wrapped reward_fn with AReaL's defaults (15 s); this wrapper replaces it
        # in every process that builds the workflow, since each builds it from these arguments.
        self.async_reward_fn = AsyncRewardWrapper(
            reward_fn,
            timeout_seconds=reward_timeout_s,
            max_workers=reward_max_workers,
            max_retries=reward_max_retries,
        )
