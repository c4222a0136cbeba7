"""``POST /v1/reward``: one rollout per call, in slime's ``remote_rm`` body.

slime (``--rm-type remote_rm --rm-url URL``) posts ``{"prompt", "response", "label"}`` for every
sample and keeps the JSON answer as the reward, or its field named by ``--reward-key``; so
``--rm-url http://grm:8000/v1/reward --reward-key reward`` is all it needs. Here:

* ``prompt`` is the chat-templated string (read back into plain turns like ``/get_reward`` prompts,
  :mod:`server.serving.chat_markup`) or a list of ``{role, content}`` ending with the user's turn;
* ``label`` is the reference answer when the judge has a slot for one (``--openrlhf-labels``, as for
  ``/get_reward``: ``auto`` drops it under a judge without the slot and says ``label_ignored``);
* rollouts of the same prompt and label that arrive within ``--group-window-s`` share GRM prompts
  (:mod:`server.serving.grouping`), with the same limits, dedup and errors as every scoring route.

The answer: ``reward`` in the server's scale (``--openrlhf-reward``: unit, mean or raw, on the judge's vote
scale), ``score`` in [0, 1], whether the rollout went ``unscored`` (no sample parsed, or a pairwise judge
left it unpaired: reward 0.0), and ``group_size``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from server.api.context import call_context
from server.api.protocol import SCORING_ERRORS, ChatMessage
from server.pipeline.domain import Message
from server.serving.trainer_rows import labels_ignored, rollout_item, row_rewards, uses_labels

router = APIRouter(tags=["compat"])


class RewardRequest(BaseModel):
    # slime's Sample may carry more fields in some versions: accepted and ignored.
    model_config = ConfigDict(extra="allow")

    prompt: str | list[ChatMessage] = Field(
        description="The chat-templated prompt the policy saw, or its turns (ending with the user's)."
    )
    response: str = Field(description="The rollout to judge.")
    label: Any = Field(None, description="The reference answer (a string or a number; null for none).")
    votes: Literal["hard", "soft"] | None = Field(
        None, description="Override the server's votes (--votes): hard, the scores the samples wrote, or soft."
    )


class RewardResponse(BaseModel):
    reward: float = Field(description="The reward in the server's scale (--openrlhf-reward; unit by default).")
    score: float = Field(
        description="The reward on [0, 1]: the mean vote mapped by the judge's vote scale, (mean - low) / "
        "(high - low) (deepseek-grm: (mean - 1) / 9); 0 when unscored."
    )
    unscored: bool = Field(description="No sample parsed: the reward is 0.0 and says nothing.")
    group_size: int = Field(description="Responses judged together in this rollout's GRM prompt.")
    k_used: int = Field(description="Samples that GRM prompt drew (fewer than k when adaptive k stopped early).")
    votes: Literal["hard", "soft"] = Field(description="What the samples voted with (hard or soft).")
    label_ignored: bool | None = Field(
        None,
        description="true when the label was not used: the judge has no reference slot (--openrlhf-labels auto); "
        "absent otherwise.",
    )


@router.post("/v1/reward", response_model=RewardResponse, response_model_exclude_none=True, responses=SCORING_ERRORS)
async def reward(body: RewardRequest, request: Request) -> RewardResponse:
    """One rollout's reward (slime's remote reward model call)."""
    app = request.app.state
    settings = app.grm.settings
    prompt = body.prompt if isinstance(body.prompt, str) else [Message(m.role, m.content) for m in body.prompt]
    takes_reference = app.grm.judge.takes_reference
    use_labels = uses_labels(settings.openrlhf_labels, takes_reference)
    (ignored,) = labels_ignored([body.label], 1, settings.openrlhf_labels, takes_reference)
    item = rollout_item(app.markup, prompt, body.response, body.label, use_labels=use_labels)
    spec = app.validator.resolve(dataclasses.replace(item, votes=body.votes))
    (result,) = await app.service.score(await call_context(request, app.grm), [spec], groupable=True)
    if ignored:
        app.grm.metrics.labels_ignored.inc()
    scale = app.service.vote_scale
    out = row_rewards([[0]], [result], settings.openrlhf_reward, scale, pairwise=app.grm.judge.mode == "pairwise")
    unit = row_rewards([[0]], [result], "unit", scale)
    return RewardResponse(
        reward=out.rewards[0],
        score=unit.rewards[0],
        unscored=out.unscored[0],
        group_size=out.group_sizes[0],
        k_used=out.k_used[0],
        votes=spec.votes,
        label_ignored=True if ignored else None,
    )
