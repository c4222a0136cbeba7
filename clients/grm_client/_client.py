"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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


class GRMClient(BaseClient):
    """Blocking client of grm-serve; thread-safe. See :class:`~grm_client._base.BaseClient` for options.

    Example::

        with GRMClient(base_url="http://127.0.0.1:8000") as grm:
            result = grm.score("Is the sky blue?", ["Yes, on a clear day.", "No."], k=8)
            print(result.rewards("mean"))
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=self.timeout,
            headers=self._headers(),
            transport=self._transport,
            limits=httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=64),
        )
        self._sleep = time.sleep

    def __enter__(self) -> GRMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, json: Any = None) -> Any:
        attempt = 0
        headers = self._call_headers(method, path, json)
        while True:
            try:
                with self._transport_errors(path):
                    response = self._http.request(method, path, json=json, headers=headers)
                return self._body_of(response)
            except GRMError as error:
                if not self._should_retry(attempt, error, headers):
                    raise
                self._sleep(self._wait_before_retry(attempt, error))
                attempt += 1

    def score(self, query: Query, responses: Sequence[str], **options: Any) -> ScoreResult:
        """Judge ``responses`` to ``query`` (a string or a list of ``{role, content}`` messages).

        Options: ``k``, ``k_meta``, ``temperature``, ``max_tokens``, ``seed``, ``reference`` (a reference
        answer), ``principles`` (a rubric), ``return_samples``, ``adaptive`` (``"rank"``, ``"stderr"`` or
        ``"confident"``: stop before k samples once the vote is decided), ``adaptive_epsilon``,
        ``adaptive_delta``, ``k_min``, ``votes`` (``"hard"`` or ``"soft"``).

        Raises:
            GRMError: a subclass naming what went wrong, after retries where retrying makes sense.
        """
        body = self._request("POST", "/v1/score", build_item(query, responses, **options))
        return parse_item(body, body["model"], body["template"], body.get("scale"), body.get("judge_mode"))

    def score_batch(self, items: Sequence[dict[str, Any]]) -> list[ScoreResult]:
        """Judge many items (each a ``build_item`` dict), split into concurrent calls of ``batch_size``.

        Results come back in the order of ``items``. A failing chunk raises after its retries.
        """

        def send(chunk: list[dict[str, Any]]) -> list[ScoreResult]:
            body = self._request("POST", "/v1/score", {"items": chunk})
            return [
                parse_item(i, body["model"], body["template"], body.get("scale"), body.get("judge_mode"))
                for i in body["items"]
            ]

        chunks = self._chunks(items)
        if len(chunks) <= 1:
            return [r for c in chunks for r in send(c)]
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return [r for part in pool.map(send, chunks) for r in part]

    def reward(self, prompt: Query, response: str, *, label: Any = None, votes: str | None = None) -> RolloutReward:
        """One rollout's reward through ``POST /v1/reward`` (slime's call; AReaL's adapter uses it).

        ``prompt`` may be the chat-templated string the policy saw: the server reads its turns back and
        drops the template's end tokens from ``response``. ``label`` is a reference answer. The server
        groups concurrent rollouts of one prompt and label into shared GRM prompts. ``votes`` (``"hard"`` or
        ``"soft"``) overrides the server's ``--votes``.

        Raises:
            GRMError: a subclass naming what went wrong, after retries where retrying makes sense.
        """
        body = self._request("POST", "/v1/reward", build_rollout(prompt, response, label=label, votes=votes))
        return parse_rollout_reward(body)

    def rerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None = None, **options: Any
    ) -> list[RerankResult]:
        """Best-of-N over many documents through ``/v2/rerank``: best first, ``top_n`` of them.

        Options: ``return_documents`` and grm-serve's ``k``, ``k_meta``, ``temperature``, ``max_tokens``,
        ``seed``, ``principles``, ``anchor``.

        Raises:
            GRMError: a subclass naming what went wrong, after retries where retrying makes sense.
        """
        body = self._request("POST", "/v2/rerank", build_rerank(query, documents, top_n=top_n, **options))
        return parse_rerank(body)

    def rank(self, query: Query, responses: Sequence[str], **options: Any) -> Ranking:
        """Best-of-N: judge the candidates and order them by reward."""
        return rank_of(self.score(query, responses, **options))

    def info(self) -> dict[str, Any]:
        """``/v1/info``: model, template, meta RM, defaults and limits."""
        result: dict[str, Any] = self._request("GET", "/v1/info")
        return result

    def health(self) -> bool:
        """Whether the server is ready to score (no retries)."""
        try:
            return self._http.get("/health/ready").is_success
        except httpx.HTTPError:
            return False
