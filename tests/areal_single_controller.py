"""AReaL 1.0.4's single-controller path for a workflow, run in-process: what the docs' training script
hands ``trainer.train``, and the workflow a rollout worker builds from it.

The controller's ``RolloutController.submit`` (the task it queues), AReaL's RPC serialisation out and
back over JSON (what ``LocalScheduler.async_call_engine`` posts and the worker's ``/call`` reads), and
the worker's ``RemoteInfEngine.submit``, which builds the workflow: AReaL's own code, with the task
dispatcher and the workflow executor replaced by recorders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from tests.trainer_docs import run_python_snippet


@contextlib.contextmanager
def process_state_kept_from_areal() -> Iterator[None]:
    """Undo, when the block ends, what importing AReaL 1.0.4 does to the whole process: it installs
    uvloop's event-loop policy (``areal/api/cli_args.py``), and its ``getLogger`` swaps in a new logging
    root and manager and reconfigures logging with ``disable_existing_loggers`` (``areal/utils/logging.py``),
    so the loggers the server created earlier log to a root nobody watches (pytest's caplog included)."""
    policy = asyncio.get_event_loop_policy()
    root, manager = logging.Logger.root, logging.Logger.manager
    level, handlers = logging.root.level, list(logging.root.handlers)
    disabled = {name: lg.disabled for name, lg in manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(policy)
        logging.Logger.root, logging.Logger.manager = root, manager
        logging.root.setLevel(level)
        logging.root.handlers[:] = handlers
        for name, was in disabled.items():
            logger = manager.loggerDict.get(name)
            if isinstance(logger, logging.Logger):
                logger.disabled = was


class RecordingTrainer:
    """``PPOTrainer.train`` as far as the snippet calls it: what it was handed."""

    def train(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


def documented_train_call(
    url: str, tokenizer_path: str, replacements: dict[str, str] | None = None, max_new_tokens: int = 16
) -> dict[str, Any]:
    """The keyword arguments docs/trainers.md's AReaL lines pass ``trainer.train``, run as written but for
    the URL (and ``replacements``), with ``config`` a GRPO config's ``gconfig`` and ``tokenizer_path``."""
    from areal.api.cli_args import GenerationHyperparameters

    gconfig = GenerationHyperparameters(max_new_tokens=max_new_tokens)
    config = SimpleNamespace(gconfig=gconfig, tokenizer_path=tokenizer_path)
    trainer = RecordingTrainer()
    replacements = {'"http://grm:8000"': repr(url), **(replacements or {})}
    run_python_snippet("areal", replacements, {"config": config, "trainer": trainer})
    return trainer.kwargs


def built_on_a_worker(workflow: Any, workflow_kwargs: dict[str, Any] | None, data: dict[str, Any]) -> Any:
    """The workflow a rollout worker builds from what the single controller sends it for one task."""
    from areal.infra.controller.rollout_controller import RolloutController
    from areal.infra.remote_inf_engine import RemoteInfEngine
    from areal.infra.rpc.serialization import deserialize_value, serialize_value
    from areal.infra.workflow_executor import TaskIdGenerator

    queued: list[Any] = []
    controller = object.__new__(RolloutController)  # its own submit; the dispatcher only records
    controller._task_id_generator = TaskIdGenerator()
    controller._dispatcher = SimpleNamespace(submit_task_input=queued.append)
    RolloutController.submit(controller, data, workflow=workflow, workflow_kwargs=workflow_kwargs)
    (task,) = queued
    # The keyword arguments _create_submit_callback passes to scheduler.async_call_engine(worker, "submit").
    call = {"data": task.data, "workflow": task.workflow, "workflow_kwargs": task.workflow_kwargs}
    call |= {"should_accept_fn": task.should_accept_fn, "is_eval": task.is_eval, "group_size": task.group_size}
    received = deserialize_value(json.loads(json.dumps(serialize_value(call))))

    built: list[Any] = []
    worker = object.__new__(RemoteInfEngine)  # its own submit; the executor only records
    worker.config = SimpleNamespace(agent=None)
    worker.logger = logging.getLogger("rollout-worker")
    worker._workflow_executor = SimpleNamespace(submit=lambda data, workflow, **_: built.append(workflow))
    RemoteInfEngine.submit(worker, task_id=task.task_id, **received)
    (workflow_on_worker,) = built
    return workflow_on_worker
