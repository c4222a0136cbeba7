"""Grouping completions by prompt and turning a judged group into floats (shared by integrations)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any

from grm_client._async_client import AsyncGRMClient
from grm_client._base import build_item
from grm_client._client import GRMClient
from grm_client._models import RewardMode, ScoreResult
from grm_client.labels import reference_of_label

Prompt = str | list[dict[str, Any]]


def group_by_prompt(prompts: Sequence[Any], references: Sequence[str | None] | None = None) -> list[list[int]]:
    """Indices of equal prompts (and references), in first-seen order.

    GRPO's completions of one prompt are judged together; rows with different reference answers never are.
    """
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault((repr(p), references[i] if references is not None else None), []).append(i)
    return list(groups.values())


def as_reference(value: Any) -> str | None:
    """A reference answer from a dataset value, by the rule the server reads labels with
    (:func:`grm_client.labels.reference_of_label`): None, blank or NaN for none, ``3.0`` as ``"3"``.

    Raises:
        ValueError: for other types (a list or dict is no single answer; a bool is no answer), or an
            infinite number.
    """
    return reference_of_label(value)


def as_query(prompt: Prompt) -> str | list[dict[str, str]]:
    """A grm-serve query from a plain or conversational prompt (system turns kept, last turn the user's)."""
    if isinstance(prompt, str):
        return prompt
    messages = [{"role": str(m["role"]), "content": _text(m["content"])} for m in prompt]
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a conversational prompt must end with the user's turn")
    return messages


def as_response(completion: Any) -> str:
    """The text of a plain completion or of the last turn of a conversational one."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        return _text(completion[-1]["content"])
    raise ValueError(f"cannot read a completion of type {type(completion).__name__}")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: keep the text ones
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def rewards_for_groups(
    client: GRMClient,
    queries: Sequence[str | list[dict[str, str]]],
    responses: Sequence[str],
    *,
    reward: RewardMode,
    missing: float,
    options: dict[str, Any],
    references: Sequence[str | None] | None = None,
    prompts: Sequence[Any] | None = None,
) -> list[float]:
    """Judge the rows of each prompt (and reference) in one item, one batch call split by the client,
    and scatter the rewards back in the rows' order.

    Rows are grouped by ``prompts`` (the trainer's own, default ``queries``) and ``references`` with
    :func:`group_by_prompt`, so a group's rows always share their reference answer.
    """
    groups = group_by_prompt(prompts if prompts is not None else queries, references)
    items = [
        build_item(
            queries[g[0]],
            [responses[i] for i in g],
            reference=references[g[0]] if references is not None else None,
            **options,
        )
        for g in groups
    ]
    results: list[ScoreResult] = client.score_batch(items)
    out = [missing] * len(responses)
    for g, result in zip(groups, results, strict=True):
        for i, value in zip(g, result.rewards(reward, missing=missing), strict=True):
            out[i] = float(value if value is not None else missing)
    return out


GRM_OPTIONS = ("k", "k_meta", "temperature", "max_tokens", "seed", "principles")


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The per-request GRM options an integration forwards, checked when it is built, not per call.

    Raises:
        ValueError: naming an option grm-serve does not know.
    """
    unknown = sorted(set(options) - set(GRM_OPTIONS))
    if unknown:
        raise ValueError(f"unknown GRM option(s) {', '.join(map(repr, unknown))}; known: {', '.join(GRM_OPTIONS)}")
    return options


def default_base_url() -> str:
    return os.environ.get("GRM_URL", "http://127.0.0.1:8000")


_lock = threading.Lock()
_sync_clients: dict[tuple[int, str], GRMClient] = {}
_async_clients: dict[asyncio.AbstractEventLoop, dict[str, AsyncGRMClient]] = {}


def shared_client(base_url: str) -> GRMClient:
    """One blocking client per process and address (it is thread-safe).

    Keyed by process id too: a worker forked from a process that already had a client (AReaL's
    process pool) must not share its parent's open connections.
    """
    key = (os.getpid(), base_url)
    with _lock:
        client = _sync_clients.get(key)
        if client is None:
            client = _sync_clients[key] = GRMClient(base_url=base_url)
        return client


def loop_client(base_url: str) -> AsyncGRMClient:
    """One async client per running event loop and address.

    An httpx async client belongs to the loop it first ran on, and trainers run their async reward
    functions on a loop of their own (TRL's daemon loop, each verl reward-loop worker's loop), so the
    connection pool is shared by every call on that loop and never crosses loops. Clients of loops that
    have closed are dropped.
    """
    loop = asyncio.get_running_loop()
    with _lock:
        for stale in [known for known in _async_clients if known.is_closed()]:
            del _async_clients[stale]
        clients = _async_clients.setdefault(loop, {})
        client = clients.get(base_url)
        if client is None:
            client = clients[base_url] = AsyncGRMClient(base_url=base_url)
        return client


async def row_rewards(
    client: AsyncGRMClient,
    queries: Sequence[str | list[dict[str, str]]],
    responses: Sequence[str],
    *,
    reward: RewardMode,
    missing: float,
    options: dict[str, Any],
    references: Sequence[str | None] | None = None,
) -> list[float]:
    """Each row judged in its own concurrent ``/v1/score`` call; rewards in the rows' order.

    The server groups concurrent one-row calls that can share a GRM prompt (same conversation,
    reference and options; ``--group-window-s``), so the rows of one prompt are judged together, and so
    are rows of one prompt that reach it from different calls (another rank's share of a GRPO group,
    verl's per-sample calls). One row per call also means a retry repeats one row only.
    """

    async def one(i: int) -> float:
        reference = references[i] if references is not None else None
        result = await client.score(queries[i], [responses[i]], reference=reference, **options)
        (value,) = result.rewards(reward, missing=missing)
        return float(value if value is not None else missing)

    return list(await asyncio.gather(*(one(i) for i in range(len(responses)))))
