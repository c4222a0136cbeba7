"""``POST /get_reward``: OpenRLHF's remote reward model wire format, so ``--remote_rm_url`` works unchanged.

OpenRLHF sends ``{"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [...]}``
(one row per rollout, often one row per call; ``query`` is the decoded sequence with the policy's chat
markup) and reads ``rewards`` (and ``scores``, ``extra_logs`` when present) from the answer. Here:

* each row's response is its query minus its prompt, and the prompt's chat markup is read back into
  plain turns (``--chat-markup``, ``--policy-tokenizer``; :mod:`server.serving.chat_markup`) when the prompt is
  recognisably one template's; the response then loses that template's own end tokens at its very end,
  and nothing else;
* a row's label is its reference answer (``--openrlhf-labels reference``, the default; ``ignore`` drops
  them);
* rows of the same conversation and label are judged together in GRM prompts, with rows of other calls
  that arrive within ``--group-window-s`` (:mod:`server.serving.grouping`);
* each row gets its reward in the configured scale (``--openrlhf-reward``: unit, mean or raw). A row none
  of whose samples parsed gets 0.0 and is counted in ``extra_logs.grm_unscored``;
  ``extra_logs.grm_group_size`` says how many responses shared each row's GRM prompt.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from server.api.protocol import SCORING_ERRORS
from server.pipeline.aggregation import to_reward
from server.pipeline.domain import Message
from server.serving.chat_markup import to_conversation
from server.serving.errors import invalid_request
from server.serving.service import ItemOptions, ScoringService, reference_of_label

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


class GetRewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


def split_rows(body: GetRewardRequest) -> tuple[list[str], list[str]]:
    """(prompt, response) of every row, as sent.

    Raises:
        APIError: 400 when ``prompts`` is missing, of another length, or not a prefix of its query.
    """
    if len(body.prompts) != len(body.query):
        raise invalid_request(f"{len(body.query)} queries but {len(body.prompts)} prompts")
    responses = []
    for i, (query, prompt) in enumerate(zip(body.query, body.prompts, strict=True)):
        if not query.startswith(prompt):
            raise invalid_request(f"query {i} does not start with its prompt")
        responses.append(query[len(prompt) :])
    return list(body.prompts), responses


def references_of(body: GetRewardRequest, use_labels: bool) -> list[str | None]:
    """Each row's reference answer: its label when labels are used and it has a non-blank one.

    Raises:
        APIError: 400 for labels of another length, or a label that is not a string or a number.
    """
    if body.labels is None or not use_labels:
        return [None] * len(body.query)
    if len(body.labels) != len(body.query):
        raise invalid_request(f"{len(body.query)} queries but {len(body.labels)} labels")
    return [reference_of_label(label, f"label {i}") for i, label in enumerate(body.labels)]


@router.post("/get_reward", response_model=GetRewardResponse, responses=_ERRORS)
async def get_reward(body: GetRewardRequest, request: Request) -> GetRewardResponse:
    """OpenRLHF remote-RM endpoint: one reward per query, rows of the same prompt judged together."""
    service: ScoringService = request.app.state.service
    prompts, raw_responses = split_rows(body)
    references = references_of(body, service.settings.openrlhf_labels == "reference")
    groups: dict[tuple[tuple[Message, ...], str | None], list[int]] = {}
    responses: list[str] = []
    for i, (prompt, response) in enumerate(zip(prompts, raw_responses, strict=True)):
        messages, text = to_conversation(service.markup, prompt, response)
        responses.append(text)
        groups.setdefault((messages, references[i]), []).append(i)
    service.check_items(len(groups))
    specs = [
        service.resolve(
            ItemOptions(messages=messages, responses=tuple(responses[i] for i in rows), reference=reference)
        )
        for (messages, reference), rows in groups.items()
    ]
    results = await service.score(request, specs, groupable=True)
    mode = body.reward or service.settings.openrlhf_reward
    rewards = [0.0] * len(responses)
    unscored = [0.0] * len(responses)
    group_size = [0.0] * len(responses)
    for rows, result in zip(groups.values(), results, strict=True):
        for row, score, size in zip(rows, result.responses, result.group_sizes, strict=True):
            value = to_reward(score, mode)
            rewards[row] = 0.0 if value is None else value
            unscored[row] = 1.0 if value is None else 0.0
            group_size[row] = float(size)
    return GetRewardResponse(
        rewards=rewards, scores=rewards, extra_logs={"grm_unscored": unscored, "grm_group_size": group_size}
    )
