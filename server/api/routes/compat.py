"""``POST /get_reward``: OpenRLHF's remote reward model wire format, so ``--reward.remote_url`` works unchanged.

OpenRLHF sends ``{"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [...]}``
(one row per rollout, often one row per call; ``query`` is the decoded sequence with the policy's chat
markup) and reads ``rewards`` (and ``scores``, ``extra_logs`` when present) from the answer. Here:

* each row's response is its query minus its prompt; rows become GRM items as
  :mod:`server.serving.trainer_rows` says (chat markup read back, labels as references, rows of one
  conversation and label judged together, with other calls' rows too);
* each row gets its reward in the configured scale (``--openrlhf-reward``: unit, mean or raw, on the
  judge's vote scale). A row none of whose samples parsed, or that a pairwise judge left unpaired, gets
  0.0 and is counted in ``extra_logs.grm_unscored``;
  ``extra_logs.grm_group_size`` says how many responses shared each row's GRM prompt, and
  ``extra_logs.grm_k_used`` how many samples that prompt drew (fewer than k when adaptive k stopped early);
  ``extra_logs.grm_label_ignored`` (present only then) marks rows whose label was dropped because the judge
  has no reference slot (``--openrlhf-labels auto``); ``votes`` says what the samples voted with (``--votes``, or
  the body's own ``votes``: hard or soft).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from server.api.context import call_context
from server.api.protocol import SCORING_ERRORS
from server.serving.trainer_rows import labels_ignored, references_of, row_items, row_rewards, split_rows, uses_labels

router = APIRouter(tags=["compat"])
_ERRORS = SCORING_ERRORS


class GetRewardRequest(BaseModel):
    # OpenRLHF variants add fields (datasources, metadata, token ids): accepted and ignored.
    model_config = ConfigDict(extra="allow")

    query: list[str] = Field(min_length=1, description="Prompt + response texts, one per rollout.")
    prompts: list[str] = Field(description="The prompt part of each query (OpenRLHF always sends it).")
    labels: list[Any] | None = Field(
        None,
        description="Reference answers, one per row (strings or numbers; null for none), unless the server "
        "ignores labels (--openrlhf-labels ignore).",
    )
    reward: Literal["unit", "mean", "raw"] | None = Field(None, description="Override the server's scale.")
    votes: Literal["hard", "soft"] | None = Field(
        None, description="Override the server's votes (--votes): hard, the scores the samples wrote, or soft."
    )


class GetRewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]
    votes: Literal["hard", "soft"] = Field(description="What the samples voted with (hard or soft).")


@router.post("/get_reward", response_model=GetRewardResponse, responses=_ERRORS)
async def get_reward(body: GetRewardRequest, request: Request) -> GetRewardResponse:
    """OpenRLHF remote-RM endpoint: one reward per query, rows of the same prompt judged together."""
    app = request.app.state
    settings = app.grm.settings
    responses = split_rows(body.query, body.prompts)
    takes_reference = app.grm.judge.takes_reference
    use = uses_labels(settings.openrlhf_labels, takes_reference)
    references = references_of(body.labels, len(body.query), use)
    ignored = labels_ignored(body.labels, len(body.query), settings.openrlhf_labels, takes_reference)
    items, rows = row_items(app.markup, body.prompts, responses, references)
    app.validator.check_items(len(items))
    specs = [app.validator.resolve(dataclasses.replace(item, votes=body.votes)) for item in items]
    results = await app.service.score(await call_context(request, app.grm), specs, groupable=True)
    mode = body.reward or settings.openrlhf_reward
    out = row_rewards(rows, results, mode, app.service.vote_scale, pairwise=app.grm.judge.mode == "pairwise")
    extra_logs = {
        "grm_unscored": [float(u) for u in out.unscored],
        "grm_group_size": [float(g) for g in out.group_sizes],
        "grm_k_used": [float(k) for k in out.k_used],
    }
    if any(ignored):  # labels the judge has no slot for (--openrlhf-labels auto): judged without them
        extra_logs["grm_label_ignored"] = [float(i) for i in ignored]
        app.grm.metrics.labels_ignored.inc(sum(ignored))
    votes = specs[0].votes if specs else settings.votes
    return GetRewardResponse(rewards=out.rewards, scores=out.rewards, extra_logs=extra_logs, votes=votes)
