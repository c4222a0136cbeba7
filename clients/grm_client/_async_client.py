"""The asyncio client."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from grm_client._base import BaseClient, Query, build_item, build_rerank, build_rollout
from grm_client._errors import GRMError
from grm_client._models import (
    Ranking,
    RerankResult,
    RolloutReward,
    ScoreResult,
    parse_item,
    parse_rerank,
    parse_rollout_reward,
    rank_of,
)


class AsyncGRMClient(BaseClient):
    """Non-blocking client of grm-serve. Same options and results as :class:`GRMClient`.

    Example::

        async with AsyncGRMClient(base_url="http://127.0.0.1:8000") as grm:
            result = await grm.score("Is the sky blue?", ["Yes.", "No."])
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=self.timeout,
            headers=self._headers(),
            transport=self._transport,
            limits=httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=64),
        )
        self._sleep = asyncio.sleep

    async def __aenter__(self) -> AsyncGRMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, json: Any = None) -> Any:
        attempt = 0
        headers = self._call_headers(method, path, json)
        while True:
            try:
                with self._transport_errors(path):
                    response = await self._http.request(method, path, json=json, headers=headers)
                return self._body_of(response)
            except GRMError as error:
                if not self._should_retry(attempt, error, headers):
                    raise
                await self._sleep(self._wait_before_retry(attempt, error))
                attempt += 1

    async def score(self, query: Query, responses: Sequence[str], **options: Any) -> ScoreResult:
        """See :meth:`GRMClient.score`."""
        body = await self._request("POST", "/v1/score", build_item(query, responses, **options))
        return parse_item(body, body["model"], body["template"], body.get("scale"), body.get("judge_mode"))

    async def score_batch(self, items: Sequence[dict[str, Any]]) -> list[ScoreResult]:
        """See :meth:`GRMClient.score_batch`; at most ``max_concurrency`` calls in flight."""
        gate = asyncio.Semaphore(self.max_concurrency)

        async def send(chunk: list[dict[str, Any]]) -> list[ScoreResult]:
            async with gate:
                body = await self._request("POST", "/v1/score", {"items": chunk})
            return [
                parse_item(i, body["model"], body["template"], body.get("scale"), body.get("judge_mode"))
                for i in body["items"]
            ]

        parts = await asyncio.gather(*(send(c) for c in self._chunks(items)))
        return [r for part in parts for r in part]

    async def reward(
        self, prompt: Query, response: str, *, label: Any = None, votes: str | None = None
    ) -> RolloutReward:
        """See :meth:`GRMClient.reward`."""
        body = await self._request("POST", "/v1/reward", build_rollout(prompt, response, label=label, votes=votes))
        return parse_rollout_reward(body)

    async def rerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None = None, **options: Any
    ) -> list[RerankResult]:
        """See :meth:`GRMClient.rerank`."""
        body = await self._request("POST", "/v2/rerank", build_rerank(query, documents, top_n=top_n, **options))
        return parse_rerank(body)

    async def rank(self, query: Query, responses: Sequence[str], **options: Any) -> Ranking:
        """See :meth:`GRMClient.rank`."""
        return rank_of(await self.score(query, responses, **options))

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/v1/info")
        return result

    async def health(self) -> bool:
        try:
            return (await self._http.get("/health/ready")).is_success
        except httpx.HTTPError:
            return False
