"""The scoring service: what runs every validated call, whatever route it came through.

:meth:`ScoringService.score` takes the call's :class:`~server.serving.context.CallContext` and its
resolved specs (:mod:`server.serving.validation`) and owns the rest:

* readiness (503 while starting, draining or dead);
* duplicate requests: a retry of a request still running attaches to it, and one that arrives soon
  after it finished gets the same answer (:mod:`server.serving.dedup`);
* admission by engine work (429 at once when the queue cannot finish a call within its deadline,
  :mod:`server.serving.admission`) and each call's own deadline (504);
* cancellation when the client disconnects (the engine work is aborted);
* grouping across calls (:mod:`server.serving.grouping`) and the per-item metrics of finished work.

It is built once per app; it knows nothing of HTTP, so tests drive it with plain values.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Sequence

from server.pipeline.domain import ItemResult
from server.pipeline.judges import Scale, judged_sets, vote_scale
from server.pipeline.judges.pairing import pool_size
from server.pipeline.scoring import Linked, ScoreSpec
from server.pipeline.soft_values import sample_pass_bound
from server.serving.context import CallContext, cancel_on_disconnect
from server.serving.dedup import Dedup
from server.serving.errors import ClientClosedError, invalid_request, to_api_error
from server.serving.gate import Place
from server.serving.grouping import Grouper, Seat
from server.serving.state import AppState

log = logging.getLogger(__name__)


class ScoringService:
    """Admission, deadline, deduplication, grouping, cancellation and metrics of scoring calls.

    Args:
        state: the app's runtime state (engine lifecycle, scorer, admission, metrics).
    """

    def __init__(self, state: AppState) -> None:
        self.state = state
        settings = state.settings
        self.max_group_size = settings.max_group_size
        self.dedup: Dedup[list[ItemResult]] = Dedup(
            ttl_s=settings.idempotency_ttl_s,
            max_entries=settings.idempotency_cache_size,
            linger_s=settings.idempotency_linger_s,
            max_bytes=int(settings.idempotency_cache_mib * 2**20),
            size_of=lambda results: sum(r.approx_bytes() for r in results),
        )
        self.grouper = Grouper(
            state.scorer.score,
            window_s=settings.group_window_s,
            max_group_size=settings.max_group_size,
            on_batch=self._observe_batch,
            mode=state.judge.mode,
            work=self.work_of,
        )

    @property
    def model_name(self) -> str:
        """The GRM's name as ``/v1/info`` reports it."""
        engine = self.state.engine
        return engine.info.model if engine is not None else self.state.settings.model

    @property
    def template_name(self) -> str:
        """The judge's prompt with no rubric or reference (what ``/v1/info`` and build info name)."""
        return self.state.judge.template_name(principles=False, reference=False)

    def template_of(self, spec: ScoreSpec) -> str:
        """The versioned prompt an item is judged with: its rubric and reference slots filled or not."""
        filled = {"principles": spec.principles is not None, "reference": spec.reference is not None}
        return self.state.judge.template_name(**filled)

    @property
    def pool_size(self) -> int:
        """Responses one prompt judges together (group), or one pool compares pair by pair (pairwise: at
        least 2); 1 for a single-response judge, which judges each response alone."""
        judge = self.state.judge
        return 1 if judge.mode == "single" else pool_size(self.max_group_size, judge)

    @property
    def vote_scale(self) -> Scale:
        """The range of one vote (the judge's scale, or its aggregation's): what ``mean_score`` spans and
        ``unit`` rewards and rerank relevance map to [0, 1]."""
        return vote_scale(self.state.judge, self.state.settings.aggregation)

    def work_of(self, spec: ScoreSpec, responses: int) -> float:
        """The engine work of judging ``responses`` of ``spec``'s prompt as one item, in samples (engine
        sequences): k per judged set (a GRM group, a pair, a single response). With soft votes each sample
        may add up to :func:`~server.pipeline.soft_values.sample_pass_bound` scoring passes, each one
        sequence of one token, booked as one sample (the work gate counts it so too)."""
        judge = self.state.judge
        sets = judged_sets(responses, self.max_group_size, judge, spec.pairing)
        if spec.votes != "soft":
            return spec.k * len(sets)
        return sum(spec.k * (1 + sample_pass_bound(judge, len(shown))) for shown in sets)

    def never_paired(self, spec: ScoreSpec, groupable: bool) -> str | None:
        """Why a pairwise judge could never judge ``spec`` (None: it can): one response, and no chance to
        meet other calls' rows of its prompt."""
        judge = self.state.judge
        if judge.mode != "pairwise" or len(spec.responses) != 1 or self._grouped(spec, groupable):
            return None
        if self.grouper.window_s <= 0:
            why = "grouping across calls is off (--group-window-s 0)"
        elif spec.seed is not None:
            why = "it has a seed, and seeded items are never grouped with other calls' rows"
        else:
            why = "this call's items are not grouped with other calls' (a rerank, or a /v1/score item with samples)"
        return (
            f"judge {judge.name!r} is pairwise: an item with one response has nothing to be compared with, and "
            f"this one cannot wait for other calls' rows of its prompt ({why}); send at least 2 responses"
        )

    def _grouped(self, spec: ScoreSpec, groupable: bool) -> bool:
        return groupable and self.grouper.accepts(spec)

    def plan(self, specs: Sequence[ScoreSpec], flags: Sequence[bool]) -> tuple[float, list[Place]]:
        """The engine work a call's items bring, in samples (what admission counts against the engine's
        capacity), and the places in line of the batches other calls opened that its rows would join.

        An item judged on its own brings k samples per judged set (:meth:`work_of`). Grouped rows bring
        a full batch's work (one group, or a full pool's pairs) per batch they would open, as
        :meth:`Grouper.enter <server.serving.grouping.Grouper.enter>` would seat them
        in order: a row joining a batch (another call's, while it has room, or one an earlier row of
        this call opened) brings none.
        """
        grouped = [spec for spec, flag in zip(specs, flags, strict=True) if self._grouped(spec, flag)]
        alone = [spec for spec, flag in zip(specs, flags, strict=True) if not self._grouped(spec, flag)]
        samples, joins = self.grouper.plan(grouped)
        return samples + sum(self.work_of(spec, len(spec.responses)) for spec in alone), joins

    def _observe_batch(self, combined: ItemResult, calls: int) -> None:
        self.state.metrics.observe_items([combined])
        if calls > 1:
            self.state.metrics.grouped_rows.inc(len(combined.responses))

    async def _score_item(self, spec: ScoreSpec, seat: Seat | None, request_id: str) -> ItemResult:
        """One item: in its seat of a batch with other calls' rows of its prompt (same tenant), else alone."""
        if seat is not None:
            return await self.grouper.wait(seat)  # observed once per batch, by _observe_batch
        result = await self.state.scorer.score(spec, request_id)
        self.state.metrics.observe_items([result])
        return result

    async def _score_linked(self, specs: Sequence[ScoreSpec], linked: Linked, request_id: str) -> list[ItemResult]:
        """Items ranked together (a rerank's groups): adaptive ones stop together (never grouped)."""
        results = await self.state.scorer.score_linked(specs, linked, request_id)
        self.state.metrics.observe_items(results)
        return results

    async def score(
        self,
        call: CallContext,
        specs: Sequence[ScoreSpec],
        groupable: Sequence[bool] | bool = False,
        *,
        linked: Linked | None = None,
    ) -> list[ItemResult]:
        """Run one call's resolved items through the pipeline.

        ``groupable`` (per item, or for all) lets an item that leaves room in a GRM group wait up to
        ``--group-window-s`` for same-prompt rows of other calls of the same tenant
        (:mod:`server.serving.grouping`); items with a seed never wait. ``linked`` says the items'
        responses are ranked together (a rerank): adaptive k then decides for all of them at once, and
        no item is grouped.

        Each call waits for its job until its own deadline. A job shared by several calls (dedup)
        runs while any of them still waits, and lingers ``--idempotency-linger-s`` after the last one
        left (disconnected or timed out), so a retry attaches to it.

        Raises:
            ClientClosedError: the client disconnected (nobody is listening; answered 499).
            APIError: 400 for a pairwise judge's one-response item that can never be paired
                (:meth:`never_paired`), 503 while the engine is not up or draining, 429 when the engine's queue cannot
                finish the call within its deadline, 504 past this call's deadline, 422 for an
                Idempotency-Key reused with another body, the mapped status otherwise.
        """
        state = self.state
        flags = [groupable and linked is None] * len(specs) if isinstance(groupable, bool) else list(groupable)
        for spec, flag in zip(specs, flags, strict=True):
            if refused := self.never_paired(spec, flag):
                raise invalid_request(refused)
        if not state.ready.is_set():
            raise to_api_error(state.unavailable_error())
        # Whose work it is: grouping never mixes tenants, and the work gate serves them fairly.
        specs = [dataclasses.replace(spec, tenant=call.tenant) for spec in specs]

        async def job() -> list[ItemResult]:
            # Engine request ids are the server's own, unique per job: callers reuse their X-Request-ID
            # (a whole training step under one id, a retry with a new body), and the engine aborts or
            # refuses requests by id. The caller's id stays in the logs, with this one beside it.
            engine_id = uuid.uuid4().hex
            log.debug("engine requests of this call: %s-*", engine_id)
            work, joins = self.plan(specs, flags)
            with state.admission.admit(call.tenant, work, call.deadline_s, joins=joins) as share:
                # Seated in the step of admission (no await between): the next call's plan sees these
                # rows in their batches, and each batch this call opens takes its k samples of the share.
                seats: list[Seat | None] = []
                try:
                    for spec, flag in zip(specs, flags, strict=True):
                        seats.append(self.grouper.enter(spec, share) if self._grouped(spec, flag) else None)
                    if linked is not None:
                        results = await self._score_linked(specs, linked, engine_id)
                    else:
                        async with asyncio.TaskGroup() as tg:
                            tasks = [
                                tg.create_task(self._score_item(spec, seat, f"{engine_id}-i{i}"))
                                for i, (spec, seat) in enumerate(zip(specs, seats, strict=True))
                            ]
                        results = [t.result() for t in tasks]
                except* Exception as group:
                    cause = _first(group)
                    error = to_api_error(cause)
                    if error.status == 500:
                        log.error("scoring failed unexpectedly", exc_info=cause)
                    raise error from None
                finally:  # a seat whose task never ran (cancelled before its first step) is left here
                    for seat in seats:
                        if seat is not None:
                            self.grouper.leave(seat)
            return results

        async def wait() -> list[ItemResult]:
            result, how = await self.dedup.run(
                call.dedup_key, job, fingerprint=call.fingerprint, scope=call.tenant, timeout=call.deadline_s
            )
            if how != "new":
                state.metrics.deduplicated.labels(how).inc()
            return result

        try:
            results = await cancel_on_disconnect(call.disconnected, wait())
        except Exception as exc:
            error = to_api_error(exc)
            if error.status == 500:
                log.error("scoring failed unexpectedly", exc_info=exc)
            raise error from None
        if results is None:
            raise ClientClosedError
        return results


def _first(group: BaseExceptionGroup) -> BaseException:
    """The innermost first exception of a (nested) TaskGroup failure."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
