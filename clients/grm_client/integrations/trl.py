"""Reward functions for TRL's ``GRPOTrainer`` backed by grm-serve, synchronous and async.

::

    from grm_client.integrations.trl import grm_async_reward_func, grm_reward_func
    trainer = GRPOTrainer(model=..., reward_funcs=[grm_async_reward_func("http://127.0.0.1:8000", k=4)], ...)

TRL calls it with the batch's ``prompts`` and ``completions`` (plain strings or chat messages); the
``num_generations`` completions of one prompt are judged together in one GRM prompt (the paper's
multi-response mode, split by the server above ``--max-group-size``), and one float per completion
comes back in TRL's order.

The async function (TRL runs ``async def`` reward functions on a daemon event loop, concurrently with
the trainer's other async reward functions) sends each completion in its own concurrent call and lets
the server group the calls of one prompt (``--group-window-s``): with several processes, each rank's
share of a prompt's completions then meets the others' in one GRM prompt. The synchronous one sends
one batch call, its rows grouped by prompt on the client.

With ``reference_column="answer"`` (any dataset column TRL passes through), each completion is judged
against its row's reference answer: the GRM checks correctness first (math, code, QA data). A grm-serve
started with ``GRM_API_KEYS`` wants ``api_key=`` or ``$GRM_API_KEY``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from grm_client._async_client import AsyncGRMClient
from grm_client._client import GRMClient
from grm_client._models import RewardMode
from grm_client.integrations._common import (
    as_query,
    as_reference,
    as_response,
    check_options,
    default_api_key,
    default_base_url,
    loop_client,
    rewards_for_groups,
    row_rewards,
)

Columns = dict[str, Any]


def grm_reward_func(
    base_url: str | None = None,
    *,
    api_key: str | None = None,
    reward: RewardMode = "unit",
    missing: float = 0.0,
    client: GRMClient | None = None,
    name: str = "grm",
    reference_column: str | None = None,
    **options: Any,
) -> Callable[..., list[float]]:
    """Build the reward function.

    Args:
        base_url: grm-serve's address (default ``$GRM_URL`` or ``http://127.0.0.1:8000``).
        api_key: the key of a grm-serve started with ``GRM_API_KEYS`` (default ``$GRM_API_KEY``; none
            when unset).
        reward: ``raw``, ``mean`` or ``unit`` (see :data:`grm_client.RewardMode`); ``unit`` keeps
            rewards in [0, 1] whatever k is.
        missing: the reward of a completion none of whose samples could be parsed.
        client: a configured :class:`GRMClient` (retries, API key); built from ``base_url`` and
            ``api_key`` if None.
        name: the reward's name in TRL's logs.
        reference_column: a dataset column holding each prompt's reference answer (None: judge without).
        **options: per-request GRM options (``k``, ``k_meta``, ``temperature``, ``max_tokens``, ``seed``).

    Raises:
        ValueError: for an unknown GRM option, or an ``api_key`` beside a ``client`` (give the client the key).
    """
    check_options(options)
    _one_key(client, api_key)
    grm = client or GRMClient(base_url=base_url or default_base_url(), api_key=api_key or default_api_key())

    def reward_func(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        queries, responses, references = _rows(prompts, completions, columns, reference_column)
        return rewards_for_groups(
            grm,
            queries,
            responses,
            reward=reward,
            missing=missing,
            options=options,
            references=references,
            prompts=prompts,
        )

    reward_func.__name__ = name  # TRL logs rewards under the function's name
    return reward_func


def grm_async_reward_func(
    base_url: str | None = None,
    *,
    api_key: str | None = None,
    reward: RewardMode = "unit",
    missing: float = 0.0,
    client: AsyncGRMClient | None = None,
    name: str = "grm",
    reference_column: str | None = None,
    **options: Any,
) -> Callable[..., Awaitable[list[float]]]:
    """Build the ``async def`` reward function; arguments as :func:`grm_reward_func`.

    Without ``client``, calls on one event loop share one :class:`AsyncGRMClient` (TRL keeps one loop
    for the whole run).
    """
    check_options(options)
    _one_key(client, api_key)
    url, key = base_url or default_base_url(), api_key or default_api_key()

    async def reward_func(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        queries, responses, references = _rows(prompts, completions, columns, reference_column)
        return await row_rewards(
            client or loop_client(url, key),
            queries,
            responses,
            reward=reward,
            missing=missing,
            options=options,
            references=references,
        )

    reward_func.__name__ = name
    return reward_func


def _one_key(client: object, api_key: str | None) -> None:
    """A key beside a configured client would be silently unused: every call would get a 401."""
    if client is not None and api_key is not None:
        raise ValueError("pass the API key to the client you give (GRMClient(api_key=...)), not beside it")


def _rows(
    prompts: list[Any], completions: list[Any], columns: Columns, reference_column: str | None
) -> tuple[list[str | list[dict[str, str]]], list[str], list[str | None] | None]:
    """TRL's batch as grm-serve queries, responses and (with ``reference_column``) references."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    queries = [as_query(p) for p in prompts]
    responses = [as_response(c) for c in completions]
    if reference_column is None:
        return queries, responses, None
    if reference_column not in columns:
        known = ", ".join(sorted(k for k in columns if isinstance(columns[k], list))) or "none"
        raise ValueError(f"no dataset column {reference_column!r} reached the reward function (columns: {known})")
    return queries, responses, [as_reference(v) for v in columns[reference_column]]
