"""What the sync and async clients share: config, request bodies, error mapping, retry policy."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from grm_client._errors import (
    APIStatusError,
    DeadlineExceededError,
    GRMError,
    RequestTimeoutError,
    TransportError,
    error_class,
)

DEFAULT_TIMEOUT_S = 600.0  # k samples of a long critique on a busy server take minutes

Message = dict[str, str]
Query = str | Sequence[Message]


AFFINITY_HEADER = "x-grm-affinity"


def affinity_of(path: str, body: Any) -> str | None:
    """A digest of what calls that can share a GRM prompt have in common, for load balancers in front
    of several grm-serve replicas to hash on (grouping and dedup live in each replica).

    ``/v1/score``: the item's conversation, reference and options, not its responses (a batch by its
    first item); ``/v1/reward``: the prompt and label; anything else: the whole body. A retry sends
    the same body, so it gets the same value.
    """
    if not isinstance(body, dict):
        return None
    part: Any = body
    if path == "/v1/score":
        item = body["items"][0] if isinstance(body.get("items"), list) and body["items"] else body
        part = {k: v for k, v in item.items() if k not in ("responses", "return_samples")}
    elif path == "/v1/reward":
        part = [body.get("prompt"), body.get("label")]
    canonical = json.dumps([path, part], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def build_item(
    query: Query,
    responses: Sequence[str],
    *,
    k: int | None = None,
    k_meta: int | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    reference: str | None = None,
    principles: Sequence[str] | str | None = None,
    return_samples: bool = False,
    adaptive: str | None = None,
    adaptive_epsilon: float | None = None,
    adaptive_delta: float | None = None,
    k_min: int | None = None,
    votes: str | None = None,
) -> dict[str, Any]:
    """The JSON of one ``/v1/score`` item; ``query`` is a string or a list of ``{role, content}``.

    ``reference`` is a reference answer the GRM judges correctness against; ``principles`` a rubric;
    ``adaptive`` (``"rank"``, ``"stderr"``, ``"confident"`` or ``"off"``) lets the item stop before k
    samples once its vote is decided, with ``adaptive_epsilon``, ``adaptive_delta`` and ``k_min`` (see the
    server's docs/adaptive.md); ``votes`` (``"hard"`` or ``"soft"``) says what a sample votes with: the scores
    it wrote, or the expectations of the judge's own distributions where it wrote them.
    """
    item: dict[str, Any] = {"responses": list(responses)}
    if isinstance(query, str):
        item["query"] = query
    else:
        item["messages"] = [{"role": m["role"], "content": m["content"]} for m in query]
    options = {"k": k, "k_meta": k_meta, "temperature": temperature, "max_tokens": max_tokens, "seed": seed,
               "adaptive": adaptive, "adaptive_epsilon": adaptive_epsilon, "adaptive_delta": adaptive_delta,
               "k_min": k_min, "votes": votes}  # fmt: skip
    item.update({key: v for key, v in options.items() if v is not None})
    if reference is not None:
        item["reference"] = reference
    if principles is not None:
        item["principles"] = principles if isinstance(principles, str) else list(principles)
    if return_samples:
        item["return_samples"] = True
    return item


def build_rollout(prompt: Query, response: str, *, label: Any = None, votes: str | None = None) -> dict[str, Any]:
    """The JSON of a ``/v1/reward`` call: a chat-templated prompt string (the server reads its turns
    back) or a list of ``{role, content}``, one response, an optional reference answer, and the votes
    (``"hard"`` or ``"soft"``; the server's ``--votes`` when None)."""
    body: dict[str, Any] = {"response": response, "label": label}
    if votes is not None:
        body["votes"] = votes
    if isinstance(prompt, str):
        body["prompt"] = prompt
    else:
        body["prompt"] = [{"role": m["role"], "content": m["content"]} for m in prompt]
    return body


def build_rerank(
    query: str, documents: Sequence[str], *, top_n: int | None = None, return_documents: bool = False, **options: Any
) -> dict[str, Any]:
    """The JSON of a ``/v2/rerank`` call; ``options`` are grm-serve's extras (k, seed, principles, ...)."""
    body: dict[str, Any] = {"query": query, "documents": list(documents), **options}
    if top_n is not None:
        body["top_n"] = top_n
    if return_documents:
        body["return_documents"] = True
    return body


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The typed error of a non-2xx response (works for bodies that are not grm-serve's, too)."""
    error_type, message = None, response.reason_phrase or "error"
    try:
        body = response.json()
        error_type = body["error"]["type"]
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        if response.text:
            message = response.text[:500]
    retry_after = None
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            retry_after = max(0.0, float(header))
        except ValueError:
            retry_after = None  # an HTTP date: fall back to our own backoff
    cls = error_class(response.status_code, error_type)
    return cls(
        message,
        status_code=response.status_code,
        type=error_type or cls.__name__,
        request_id=response.headers.get("x-request-id"),
        retry_after=retry_after,
    )


class BaseClient:
    """Config shared by :class:`GRMClient` and :class:`AsyncGRMClient`.

    Args:
        base_url: where grm-serve listens, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``Authorization: Bearer <key>`` when set.
        timeout: seconds per HTTP call (client side).
        max_retries: further attempts after a retryable failure (0 disables retries).
        backoff_base: first backoff in seconds; doubles each attempt, with full jitter.
        backoff_max: cap of one backoff wait (a server's ``Retry-After`` is honoured up to this too).
        batch_size: items per ``/v1/score`` call when a batch is split.
        max_concurrency: split batches in flight at once.
        max_connections: HTTP connections open at once (httpx's own default is 100). A training step's
            one-rollout-per-call burst needs one per rollout in flight, or the client, not the server,
            sets the pace: grm-serve queues the work itself.
        idempotency_keys: send an ``Idempotency-Key`` with every scoring call (the same one on each of
            its retries). grm-serve runs one job per key, so a retry after a client timeout or a 504
            attaches to the running job or gets its finished answer instead of starting the k samples
            again. Without keys, timed-out calls and 504s are not retried (they would double the work).
        transport: an httpx transport (tests pass ``httpx.MockTransport`` or ``httpx.ASGITransport``).
    """

    def __init__(
        self,
        *,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        batch_size: int = 32,
        max_concurrency: int = 4,
        max_connections: int = 1024,
        idempotency_keys: bool = True,
        transport: Any = None,
    ) -> None:
        if max_retries < 0 or batch_size < 1 or max_concurrency < 1 or max_connections < 1:
            raise ValueError("max_retries must be >= 0, batch_size, max_concurrency and max_connections >= 1")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.max_connections = max_connections
        self.idempotency_keys = idempotency_keys
        self._transport = transport
        self._rng = random.Random()

    def _headers(self) -> dict[str, str]:
        headers = {"user-agent": "grm-client/0.1.0"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    def _wait_before_retry(self, attempt: int, error: GRMError) -> float:
        """Seconds to wait before attempt ``attempt + 1``: the server's Retry-After, else jittered backoff."""
        if isinstance(error, APIStatusError) and error.retry_after is not None:
            return min(error.retry_after, self.backoff_max)
        return self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))

    @contextlib.contextmanager
    def _transport_errors(self, path: str) -> Iterator[None]:
        """Turn httpx's transport failures into this client's errors."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise RequestTimeoutError(f"no answer from {self.base_url}{path} within {self.timeout}s") from exc
        except httpx.TransportError as exc:
            raise TransportError(f"cannot reach {self.base_url}{path}: {exc}") from exc

    @staticmethod
    def _body_of(response: httpx.Response) -> Any:
        """The JSON of a 2xx response.

        Raises:
            APIStatusError: the typed error of any other status.
        """
        if response.is_success:
            return response.json()
        raise error_from_response(response)

    def _call_headers(self, method: str, path: str = "", body: Any = None) -> dict[str, str]:
        """Per-call headers, the same on every retry of the call: for a POST its ``Idempotency-Key`` and
        its ``X-GRM-Affinity`` (:func:`affinity_of`)."""
        headers: dict[str, str] = {}
        if method == "POST" and self.idempotency_keys:
            headers["idempotency-key"] = uuid.uuid4().hex
        if method == "POST" and (affinity := affinity_of(path, body)):
            headers[AFFINITY_HEADER] = affinity
        return headers

    def _should_retry(self, attempt: int, error: GRMError, headers: dict[str, str]) -> bool:
        """Retry what is safe: a call that may still be running on the server only when it carries a key."""
        if attempt >= self.max_retries or not error.retryable:
            return False
        may_still_run = isinstance(error, RequestTimeoutError | DeadlineExceededError)
        return not may_still_run or "idempotency-key" in headers

    def _chunks(self, items: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        return [list(items[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
