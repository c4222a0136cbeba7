"""The serving layer: what every scoring route shares between its validated body and the pipeline.

A route turns its wire format into :class:`ItemOptions`, asks :meth:`ScoringService.resolve` for the
pipeline's :class:`~server.pipeline.scoring.ScoreSpec` (every per-item limit is checked there, once, for every
route), and awaits :meth:`ScoringService.score`, which owns the rest:

* readiness (503 while starting, draining or dead);
* duplicate requests: a retry of a request still running attaches to it, and one that arrives soon
  after it finished gets the same answer (:mod:`server.serving.dedup`);
* admission by engine work (429 at once when the queue cannot finish a call within its deadline,
  :mod:`server.serving.admission`) and each call's own deadline (504);
* cancellation when the client disconnects (the engine work is aborted);
* the per-item metrics of finished work.

It is built once per app with the app's state; the :class:`~server.pipeline.scoring.Scorer` is built once when
the engine is up. Routes never import each other: they import this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request

from server.api.middleware import TENANT_STATE
from server.config import Settings
from server.pipeline.domain import ItemResult, Message
from server.pipeline.scoring import ScoreSpec
from server.serving.admission import cancel_on_disconnect
from server.serving.chat_markup import Markup, get_markup
from server.serving.dedup import Dedup
from server.serving.errors import ClientClosedError, invalid_request, to_api_error
from server.serving.grouping import Grouper
from server.serving.state import AppState

log = logging.getLogger(__name__)

TIMEOUT_HEADER = "x-request-timeout"
IDEMPOTENCY_HEADER = "idempotency-key"
MAX_IDEMPOTENCY_KEY_CHARS = 255


@dataclass(frozen=True)
class ItemOptions:
    """One item as a route received it; ``None`` means the server's default."""

    messages: tuple[Message, ...]
    responses: tuple[str, ...]
    k: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    k_meta: int | None = None
    seed: int | None = None
    principles: Sequence[str] | str | None = None  # a user rubric: a list of criteria, or one text
    reference: str | None = None  # a reference answer (OpenRLHF's label, verl's ground_truth)


class ScoringService:
    """Request-to-spec conversion, admission, deadline, deduplication, cancellation and metrics.

    Args:
        state: the app's runtime state (engine lifecycle, admission, metrics).
    """

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.settings: Settings = state.settings
        self.dedup: Dedup[list[ItemResult]] = Dedup(
            ttl_s=self.settings.idempotency_ttl_s,
            max_entries=self.settings.idempotency_cache_size,
            linger_s=self.settings.idempotency_linger_s,
            max_bytes=int(self.settings.idempotency_cache_mib * 2**20),
            size_of=lambda results: sum(r.approx_bytes() for r in results),
        )
        self.grouper = Grouper(
            self._judge,
            window_s=self.settings.group_window_s,
            max_group_size=self.settings.max_group_size,
            on_batch=self._observe_batch,
        )
        self.markup: Markup = get_markup(self.settings.chat_markup, self.settings.policy_tokenizer)

    @property
    def model_name(self) -> str:
        """The GRM's name as ``/v1/info`` reports it."""
        engine = self.state.engine
        return engine.info.model if engine is not None else self.settings.model

    @property
    def template_name(self) -> str:
        return self.state.template.name

    # ---- request -> spec -------------------------------------------------------------------------

    def check_items(self, count: int) -> None:
        """Raises: APIError: 400 past ``max_items_per_batch``."""
        if count > self.settings.max_items_per_batch:
            raise invalid_request(
                f"{count} items exceed the server limit max_items_per_batch = {self.settings.max_items_per_batch}"
            )

    def resolve(self, item: ItemOptions) -> ScoreSpec:
        """Resolve an item's sampling choices against the server defaults and limits.

        Raises:
            APIError: 400 when a value exceeds its configured maximum, or ``k_meta`` cannot apply.
        """
        s = self.settings
        k = item.k if item.k is not None else s.k
        temperature = item.temperature if item.temperature is not None else s.temperature
        max_tokens = item.max_tokens if item.max_tokens is not None else s.max_tokens
        if item.k_meta is not None:
            if item.k_meta > k:
                raise invalid_request(f"k_meta = {item.k_meta} exceeds k = {k}")
            if self.state.meta_rm is None and self.state.ready.is_set():
                raise invalid_request("k_meta was given but the server has no meta RM (start it with --meta-rm)")
        principles = (item.principles,) if isinstance(item.principles, str) else item.principles
        if principles is not None and not any(p.strip() for p in principles):
            raise invalid_request("principles must hold at least one non-blank criterion")
        if item.reference is not None and not item.reference.strip():
            raise invalid_request("reference must not be blank; leave it out to judge without one")
        conversation_chars = (
            sum(len(m.content) for m in item.messages)
            + sum(len(p) for p in principles or ())
            + len(item.reference or "")
        )
        checks = [
            (len(item.responses), s.max_responses_per_item, "responses per item", "max_responses_per_item"),
            (k, s.max_k, "k", "max_k"),
            (temperature, s.max_temperature, "temperature", "max_temperature"),
            (max_tokens, s.max_tokens_limit, "max_tokens", "max_tokens_limit"),
            (max(map(len, item.responses)), s.max_response_chars, "characters in a response", "max_response_chars"),
            (conversation_chars, s.max_conversation_chars, "conversation chars (with principles and reference)",
             "max_conversation_chars"),
        ]  # fmt: skip
        for value, limit, what, name in checks:
            if value > limit:
                raise invalid_request(f"{what} = {value} exceeds the server limit {name} = {limit}")
        return ScoreSpec(
            messages=item.messages,
            responses=item.responses,
            k=k,
            temperature=temperature,
            top_p=s.top_p,
            max_tokens=max_tokens,
            seed=item.seed,
            k_meta=item.k_meta if item.k_meta is not None else s.k_meta,
            principles=tuple(p for p in principles if p.strip()) if principles is not None else None,
            reference=item.reference,
        )

    # ---- running ---------------------------------------------------------------------------------

    def deadline_of(self, request: Request) -> float:
        """The request's deadline in seconds: ``X-Request-Timeout`` when given, capped by the server's maximum.

        Raises:
            APIError: 400 for a header that is not a positive number.
        """
        header = request.headers.get(TIMEOUT_HEADER)
        if header is None:
            return self.settings.request_timeout_s
        try:
            value = float(header)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise invalid_request(f"{TIMEOUT_HEADER} must be a positive number of seconds, got {header!r}")
        return min(value, self.settings.request_timeout_s)

    async def dedup_key(self, request: Request) -> tuple[str | None, str]:
        """What makes two requests the same job, and the fingerprint of this one's body.

        The key is scoped to the caller's tenant (API key) and route: its ``Idempotency-Key`` when
        given, else (with ``--dedup-identical-requests``) its body. The fingerprint is a digest of the
        body with JSON's insignificant differences (key order, spacing) removed: a key reused with
        another fingerprint is refused (:class:`server.serving.dedup.KeyReusedError`), never answered with
        the other body's result.

        Raises:
            APIError: 400 for an empty or over-long key.
        """
        tenant = getattr(request.state, TENANT_STATE, "")
        scope = f"{tenant}:{request.url.path}"
        fingerprint = body_fingerprint(await request.body())  # cached by Starlette: the route already parsed it
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is not None:
            if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
                raise invalid_request(
                    f"Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters, not all blank"
                )
            return f"key:{scope}:{key}", fingerprint
        if not self.settings.dedup_identical_requests:
            return None, fingerprint
        return f"body:{scope}:{fingerprint}", fingerprint

    async def _judge(self, spec: ScoreSpec, request_id: str) -> ItemResult:
        assert self.state.scorer is not None
        return await self.state.scorer.score(spec, request_id)

    def work_of(self, spec: ScoreSpec, groupable: bool) -> float:
        """The engine work an item brings, in samples (what admission counts against the engine's
        capacity): k per GRM group; nothing for a row that joins a batch another call opened, whose
        k samples that call already brought."""
        if groupable and self.grouper.accepts(spec) and self.grouper.would_join(spec):
            return 0.0
        return spec.k * -(-len(spec.responses) // self.settings.max_group_size)

    def _observe_batch(self, combined: ItemResult, calls: int) -> None:
        self.state.metrics.observe_items([combined])
        if calls > 1:
            self.state.metrics.grouped_rows.inc(len(combined.responses))

    async def _score_item(self, spec: ScoreSpec, groupable: bool, request_id: str) -> ItemResult:
        """One item: in a batch with other calls' rows of its prompt (same tenant) when it may wait, else alone."""
        if groupable and self.grouper.accepts(spec):
            return await self.grouper.score(spec)  # observed once per batch, by _observe_batch
        result = await self._judge(spec, request_id)
        self.state.metrics.observe_items([result])
        return result

    async def score(
        self, request: Request, specs: Sequence[ScoreSpec], groupable: Sequence[bool] | bool = False
    ) -> list[ItemResult]:
        """Run resolved items through the pipeline for one HTTP request.

        ``groupable`` (per item, or for all) lets an item that leaves room in a GRM group wait up to
        ``--group-window-s`` for same-prompt rows of other calls of the same tenant
        (:mod:`server.serving.grouping`); items with a seed never wait.

        Each call waits for its job until its own deadline. A job shared by several calls (dedup)
        runs while any of them still waits, and lingers ``--idempotency-linger-s`` after the last one
        left (disconnected or timed out), so a retry attaches to it.

        Raises:
            ClientClosedError: the client disconnected (nobody is listening; answered 499).
            APIError: 503 while the engine is not up or draining, 429 when the engine's queue cannot
                finish the call within its deadline, 504 past this call's deadline, 422 for an
                Idempotency-Key reused with another body, the mapped status otherwise.
        """
        state = self.state
        if not state.ready.is_set() or state.scorer is None:
            raise to_api_error(state.unavailable_error())
        deadline = self.deadline_of(request)
        key, fingerprint = await self.dedup_key(request)
        base_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
        flags = [groupable] * len(specs) if isinstance(groupable, bool) else list(groupable)
        tenant: str = getattr(request.state, TENANT_STATE, "")
        # Whose work it is: grouping never mixes tenants, and the work gate serves them fairly.
        specs = [dataclasses.replace(spec, tenant=tenant) for spec in specs]

        async def job() -> list[ItemResult]:
            work = sum(self.work_of(spec, flag) for spec, flag in zip(specs, flags, strict=True))
            with state.admission.admit(tenant, work, deadline):
                try:
                    async with asyncio.TaskGroup() as tg:
                        tasks = [
                            tg.create_task(self._score_item(spec, flag, f"{base_id}-i{i}"))
                            for i, (spec, flag) in enumerate(zip(specs, flags, strict=True))
                        ]
                    results = [t.result() for t in tasks]
                except* Exception as group:
                    cause = _first(group)
                    error = to_api_error(cause)
                    if error.status == 500:
                        log.error("scoring failed unexpectedly", exc_info=cause)
                    raise error from None
            return results

        async def wait() -> list[ItemResult]:
            result, how = await self.dedup.run(key, job, fingerprint=fingerprint, scope=tenant, timeout=deadline)
            if how != "new":
                state.metrics.deduplicated.labels(how).inc()
            return result

        try:
            results = await cancel_on_disconnect(request, wait())
        except Exception as exc:
            error = to_api_error(exc)
            if error.status == 500:
                log.error("scoring failed unexpectedly", exc_info=exc)
            raise error from None
        if results is None:
            raise ClientClosedError
        return results


def reference_of_label(label: object, what: str = "label") -> str | None:
    """A trainer's label as the GRM's reference answer: a non-blank string, or a number as text.

    Raises:
        APIError: 400 for a label that is neither (a list, an object, a boolean).
    """
    if label is None or isinstance(label, str):
        return label if label and label.strip() else None
    if isinstance(label, int | float) and not isinstance(label, bool):
        return str(label)
    raise invalid_request(f"{what} must be a string or a number (a reference answer), got {label!r}")


def body_fingerprint(body: bytes) -> str:
    """A digest of a JSON body that ignores key order and spacing (the raw bytes' when not JSON)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return hashlib.sha256(body).hexdigest()
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _first(group: BaseExceptionGroup) -> BaseException:
    """The innermost first exception of a (nested) TaskGroup failure."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
