"""verl's custom reward function hook backed by grm-serve (verl 0.9 reward loop).

In verl's config (``reward.custom_reward_function``; see docs/trainers.md for the command-line form)::

    reward:
      custom_reward_function:
        path: /path/to/site-packages/grm_client/integrations/verl.py
        name: compute_score_async     # or compute_score (sync, run in a thread executor)
        reward_kwargs: {base_url: "http://grm:8000", reward: unit, k: 4}

verl's reward loop calls the function once per sample, concurrently: an ``async def`` one
(``compute_score_async``) is awaited on the worker's event loop, a plain one (``compute_score``) runs
in a thread executor. Either way each call is one row; the server groups the rows of one prompt that
arrive together (``--group-window-s``) into shared GRM prompts. ``compute_score_batch`` takes a whole
batch (``data_sources=``, ``solution_strs=``, ...) as verl's legacy ``BatchRewardManager`` and custom
reward managers pass it; 0.9's reward loop has no batch manager.

The prompt: verl's agent loop (the default rollout path in 0.9) adds the dataset's chat turns to
every sample's ``extra_info`` as ``raw_prompt``; a dataset may instead carry ``question`` (text) or
``messages`` (chat turns ending with the user's) in ``extra_info``. ``ground_truth`` is the
GRM's reference answer (judging correctness against it); ``use_ground_truth: false`` in
``reward_kwargs`` judges without it. The reward loop also passes ``reward_router_address`` and
``reward_model_tokenizer`` (for functions that call a reward model verl hosts itself); these
functions call grm-serve instead and ignore them.

The API key of a grm-serve started with ``GRM_API_KEYS``: ``GRM_API_KEY`` in the environment of the
reward workers (Ray actors inherit the environment of the shell that started Ray), or ``api_key`` in
``reward_kwargs``; verl prints its whole config at start, so the environment keeps the key out of
the logs.
"""

from __future__ import annotations

from typing import Any

from grm_client._models import RewardMode
from grm_client.integrations._common import (
    as_query,
    as_reference,
    check_options,
    default_api_key,
    default_base_url,
    loop_client,
    rewards_for_groups,
    row_rewards,
    shared_client,
)

# Keyword arguments verl's reward loop adds to every call; they address verl's own reward model.
VERL_LOOP_KWARGS = ("reward_router_address", "reward_model_tokenizer")


PROMPT_KEYS = ("messages", "raw_prompt", "question", "prompt", "query")


def _query(extra_info: dict[str, Any] | None) -> str | list[dict[str, str]]:
    """The prompt a sample answered, from ``extra_info``: the first of :data:`PROMPT_KEYS` present.

    verl's agent loop adds ``raw_prompt`` (the dataset's chat turns) to every sample's ``extra_info``;
    a dataset may carry ``messages`` or ``question`` itself. A value is chat turns ending with the
    user's, or the prompt's text.

    Raises:
        ValueError: no prompt, or one that is neither text nor chat turns (its repr would be judged).
    """
    info = extra_info or {}
    key = next((k for k in PROMPT_KEYS if info.get(k) is not None), None)
    if key is None:
        raise ValueError(
            "grm-serve needs the prompt: verl's agent loop passes it as extra_info['raw_prompt']; "
            "otherwise put it in the dataset's extra_info as 'question' (text) or 'messages' (chat turns)"
        )
    value = info[key]
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"extra_info[{key!r}] is blank")
        return value
    if hasattr(value, "tolist"):  # a numpy array of turns, as verl's non-tensor batch holds them
        value = value.tolist()
    if isinstance(value, list | tuple) and value and all(isinstance(m, dict) for m in value):
        return as_query(list(value))
    raise ValueError(f"extra_info[{key!r}] must be text or a list of chat turns, got {type(value).__name__}")


def _rows(
    solution_strs: list[str], ground_truths: list[Any], extra_infos: list[dict[str, Any] | None], use_ground_truth: bool
) -> dict[str, Any]:
    """A verl batch as grm-serve queries, responses and references.

    Raises:
        ValueError: the lists differ in length, or a row has no readable prompt.
    """
    if not len(solution_strs) == len(ground_truths) == len(extra_infos):
        raise ValueError(
            f"{len(solution_strs)} responses, {len(ground_truths)} ground truths, {len(extra_infos)} extra_infos"
        )
    return {
        "queries": [_query(e) for e in extra_infos],
        "responses": list(solution_strs),
        "references": [as_reference(g) if use_ground_truth else None for g in ground_truths],
    }


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The GRM options among a call's keyword arguments: verl's own are dropped, unknown ones refused."""
    return check_options({key: value for key, value in kwargs.items() if key not in VERL_LOOP_KWARGS})


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    reward: RewardMode = "unit",
    missing: float = 0.0,
    use_ground_truth: bool = True,
    **kwargs: Any,
) -> float:
    """One response's reward, judged against ``ground_truth`` when given (and ``use_ground_truth``).

    ``base_url`` defaults to ``$GRM_URL``, ``api_key`` to ``$GRM_API_KEY`` (read in the reward worker's
    process, at each call). ``kwargs``: GRM options (``k``, ``k_meta``, ``temperature``, ``max_tokens``, ``seed``,
    ``principles``) and the reward loop's own arguments, which are ignored.
    """
    client = shared_client(base_url or default_base_url(), api_key or default_api_key())
    rows = _rows([solution_str], [ground_truth], [extra_info], use_ground_truth)
    return rewards_for_groups(client, **rows, reward=reward, missing=missing, options=_options(kwargs))[0]


async def compute_score_async(
    data_source: str,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    reward: RewardMode = "unit",
    missing: float = 0.0,
    use_ground_truth: bool = True,
    **kwargs: Any,
) -> float:
    """:func:`compute_score` as a coroutine: verl's reward loop awaits it without a thread per call."""
    client = loop_client(base_url or default_base_url(), api_key or default_api_key())
    rows = _rows([solution_str], [ground_truth], [extra_info], use_ground_truth)
    (value,) = await row_rewards(client, **rows, reward=reward, missing=missing, options=_options(kwargs))
    return value


def compute_score_batch(
    data_sources: list[str],
    solution_strs: list[str],
    ground_truths: list[Any],
    extra_infos: list[dict[str, Any] | None],
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    reward: RewardMode = "unit",
    missing: float = 0.0,
    use_ground_truth: bool = True,
    **kwargs: Any,
) -> list[float]:
    """Rewards for a batch; responses to the same prompt (and ground truth) are judged together."""
    client = shared_client(base_url or default_base_url(), api_key or default_api_key())
    rows = _rows(solution_strs, ground_truths, extra_infos, use_ground_truth)
    return rewards_for_groups(client, **rows, reward=reward, missing=missing, options=_options(kwargs))


async def compute_score_batch_async(
    data_sources: list[str],
    solution_strs: list[str],
    ground_truths: list[Any],
    extra_infos: list[dict[str, Any] | None],
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    reward: RewardMode = "unit",
    missing: float = 0.0,
    use_ground_truth: bool = True,
    **kwargs: Any,
) -> list[float]:
    """:func:`compute_score_batch` as a coroutine, for reward managers that await a batch function.

    Each row goes in its own concurrent call; the server groups the rows of one prompt.
    """
    client = loop_client(base_url or default_base_url(), api_key or default_api_key())
    rows = _rows(solution_strs, ground_truths, extra_infos, use_ground_truth)
    return await row_rewards(client, **rows, reward=reward, missing=missing, options=_options(kwargs))
