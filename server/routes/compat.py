"""``POST /get_reward``: OpenRLHF's remote reward model wire format, so ``--remote_rm_url`` works unchanged.

OpenRLHF sends ``{"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [...]}``
(one row per rollout; ``query`` is the full decoded sequence) and reads ``rewards`` (and ``scores``,
``extra_logs`` when present) from the answer. Here each row's response is its query minus its prompt;
rows that share a prompt are judged together in one GRM prompt (the paper's multi-response mode), and
each gets its reward in the configured scale (``--openrlhf-reward``: unit, mean or raw). A row none of
whose samples parsed gets 0.0 and is counted in ``extra_logs.grm_unscored``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from server.aggregation import to_reward
from server.domain import Message
from server.errors import invalid_request
from server.protocol import ErrorResponse
from server.serving import CLIENT_CLOSED, ItemOptions, ScoringService

router = APIRouter(tags=["compat"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 413, 422, 500, 503, 504)}


class GetRewardRequest(BaseModel):
    # OpenRLHF variants add fields (datasources, metadata, token ids): accepted and ignored.
    model_config = ConfigDict(extra="allow")

    query: list[str] = Field(min_length=1, description="Prompt + response texts, one per rollout.")
    prompts: list[str] = Field(description="The prompt part of each query (OpenRLHF always sends it).")
    labels: list[Any] | None = Field(None, description="Ignored: a generative RM needs no reference.")
    reward: Literal["unit", "mean", "raw"] | None = Field(None, description="Override the server's scale.")


class GetRewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


def split_rows(body: GetRewardRequest) -> tuple[list[str], list[str]]:
    """(prompt, response) of every row.

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


@router.post("/get_reward", response_model=GetRewardResponse, responses=_ERRORS)
async def get_reward(body: GetRewardRequest, request: Request) -> GetRewardResponse:
    """OpenRLHF remote-RM endpoint: one reward per query, rows of the same prompt judged together."""
    service: ScoringService = request.app.state.service
    prompts, responses = split_rows(body)
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p, []).append(i)
    service.check_items(len(groups))
    specs = [
        service.resolve(ItemOptions(messages=(Message("user", prompt),), responses=tuple(responses[i] for i in rows)))
        for prompt, rows in groups.items()
    ]
    results = await service.score(request, specs)
    if results is None:
        return Response(status_code=CLIENT_CLOSED)  # type: ignore[return-value]
    mode = body.reward or service.settings.openrlhf_reward
    rewards = [0.0] * len(responses)
    unscored = [0.0] * len(responses)
    for rows, result in zip(groups.values(), results, strict=True):
        for row, score in zip(rows, result.responses, strict=True):
            value = to_reward(score, mode)
            rewards[row] = 0.0 if value is None else value
            unscored[row] = 1.0 if value is None else 0.0
    return GetRewardResponse(rewards=rewards, scores=rewards, extra_logs={"grm_unscored": unscored})
