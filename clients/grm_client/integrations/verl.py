"""verl's custom reward function hook backed by grm-serve.

In the verl config::

    custom_reward_function:
      path: /path/to/site-packages/grm_client/integrations/verl.py
      name: compute_score            # or compute_score_batch with reward_model.reward_manager=batch
      reward_kwargs: {base_url: "http://grm:8000", reward: unit, k: 4}

verl does not pass the prompt to reward functions, so the dataset must carry it in ``extra_info``
as ``question`` (a string) or ``messages`` (chat turns ending with the user's). ``ground_truth`` is
the GRM's reference answer (judging correctness against it); ``use_ground_truth: false`` in
``reward_kwargs`` judges without it. ``compute_score`` judges one response per call (the server
groups the concurrent calls of one prompt, see ``--group-window-s``); ``compute_score_batch``
judges all responses of one prompt together, which is what the paper's GRM is trained for.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from grm_client._client import GRMClient
from grm_client._models import RewardMode
from grm_client.integrations._common import (
    as_reference,
    default_base_url,
    rewards_for_groups,
)


@cache
def _client(base_url: str) -> GRMClient:
    return GRMClient(base_url=base_url)


def _query(extra_info: dict[str, Any] | None) -> str | list[dict[str, str]]:
    info = extra_info or {}
    if "messages" in info:
        return [{"role": m["role"], "content": m["content"]} for m in info["messages"]]
    for key in ("question", "prompt", "query"):
        if key in info:
            return str(info[key])
    raise ValueError("grm-serve needs the prompt: put it in the dataset's extra_info as 'question' or 'messages'")


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    *,
    base_url: str | None = None,
    reward: RewardMode = "unit",
    missing: float = 0.0,
    use_ground_truth: bool = True,
    **options: Any,
) -> float:
    """One response's reward, judged against ``ground_truth`` when given (and ``use_ground_truth``)."""
    grm = _client(base_url or default_base_url())
    references = [as_reference(ground_truth) if use_ground_truth else None]
    return rewards_for_groups(
        grm,
        [_query(extra_info)],
        [solution_str],
        reward=reward,
        missing=missing,
        options=options,
        references=references,
    )[0]


def compute_score_batch(
    data_sources: list[str],
    solution_strs: list[str],
    ground_truths: list[Any],
    extra_infos: list[dict[str, Any] | None],
    *,
    base_url: str | None = None,
    reward: RewardMode = "unit",
    missing: float = 0.0,
    use_ground_truth: bool = True,
    **options: Any,
) -> list[float]:
    """Rewards for a batch; responses to the same prompt (and ground truth) are judged together."""
    grm = _client(base_url or default_base_url())
    queries = [_query(e) for e in extra_infos]
    references = [as_reference(g) if use_ground_truth else None for g in ground_truths]
    return rewards_for_groups(
        grm,
        queries,
        solution_strs,
        reward=reward,
        missing=missing,
        options=options,
        references=references,
    )
