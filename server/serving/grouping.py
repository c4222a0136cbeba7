"""Grouping across calls: same-prompt rows from separate requests judged together in one GRM prompt.

RL trainers send one rollout per call (OpenRLHF's remote RM, verl's ``compute_score``), yet the 8-16
rollouts of one GRPO prompt arrive close together. Judged alone, each rollout costs k GRM samples;
judged in groups of up to ``max_group_size`` (the paper's multi-response mode), a group of rollouts
costs k samples together, and the GRM compares them side by side.

:class:`Grouper` holds an item that does not fill a GRM group for at most ``window_s`` seconds. Items
with the same conversation, options, reference and rubric (and caller, so tenants never share a
prompt) that arrive meanwhile join it; the batch is judged as soon as it is full or the window ends,
and each call gets its own responses' scores back. Items with a seed (repeatability) are never grouped
(:meth:`Grouper.accepts`), nor are those whose route says no: ``/v1/score`` items asking for samples
(which would show other calls' responses) and rerank calls.

Grouping can only help a call, never fail it: a batch whose prompt does not fit the engine's context
is judged again as the items of its calls still waiting, each alone, so each call gets exactly the
answer (or the error) its own item gets. Token usage is split between the calls in integers that add
up to the batch's.

Pairwise judges: rows meet in pools of ``max(2, max_group_size)`` and each batch forms its pairs (a row
left alone is ``unpaired``; a row too long for its pairs gets its own error, the rest are paired again);
a ``single`` judge's rows are never held.

A call's rows take their seats (:meth:`Grouper.enter`) in the step the call is admitted, so admission
counts a batch's work (k per judged set of a full batch) once, for the row that opens it
(:meth:`Grouper.plan`), and the batch keeps it on the books until it ends, whoever is still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from server.engines.base import EngineNotReadyError
from server.pipeline.domain import ItemResult
from server.pipeline.judges import Mode
from server.pipeline.scoring import ScoreSpec
from server.serving.admission import Share
from server.serving.gate import Place, current_place
from server.serving.grouped_results import blamed_rows, exact_shares, is_too_long, judged_alone, settle, share_of

Judge = Callable[[ScoreSpec, str], Awaitable[ItemResult]]


@dataclass(eq=False)
class Seat:
    """One call's ``responses`` in a ``batch`` (:meth:`Grouper.enter`); ``future`` holds their result once
    the batch (or their own judging, after a split) is done, which :meth:`Grouper.wait` gives."""

    responses: tuple[str, ...]
    batch: _Batch = field(repr=False)
    future: asyncio.Future[ItemResult] = field(repr=False)
    offset: int = 0
    alone: asyncio.Task[None] | None = None  # its own judging, once its batch did not fit the context


@dataclass(eq=False)
class _Batch:
    key: ScoreSpec  # the shared prompt's spec, without responses
    context: contextvars.Context  # the opening call's: the batch is judged in its place in line
    # Its work on admission's books, handed over by the call that opened it, counted until it ends.
    share: Share | None = None
    members: list[Seat] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None

    @property
    def size(self) -> int:
        """Responses collected so far."""
        return sum(len(m.responses) for m in self.members)

    def end(self) -> None:
        """Its engine work is over: its samples leave admission's books."""
        if self.share is not None:
            self.share.release()


class Grouper:
    """Collects items of the same prompt for a short window and judges each batch once.

    Args:
        judge: scores one (combined) item; called once per batch.
        window_s: how long the first item of a batch waits for others (0: no grouping).
        max_group_size: responses judged in one GRM prompt; a full batch is judged at once.
        on_batch: called with each finished batch's combined result and its number of calls (metrics).
        mode: the judge's mode (``single``: rows never held; ``pairwise``: rows meet in pools).
        work: samples of judging n responses of a spec's prompt as one item (default: k per group).
    """

    def __init__(
        self,
        judge: Judge,
        *,
        window_s: float,
        max_group_size: int,
        on_batch: Callable[[ItemResult, int], None] | None = None,
        mode: Mode = "group",
        work: Callable[[ScoreSpec, int], float] | None = None,
    ) -> None:
        self.judge = judge
        self.window_s = window_s
        self.max_group_size = max_group_size
        self.on_batch = on_batch
        self.mode = mode
        self.size = max(2, max_group_size) if mode == "pairwise" else max_group_size  # a batch's responses
        self.work = work or (lambda spec, n: spec.k * -(-n // max_group_size))
        self._open: dict[ScoreSpec, _Batch] = {}
        self._running: set[_Batch] = set()
        self._closed = False

    @property
    def collecting(self) -> int:
        """Batches still collecting rows."""
        return len(self._open)

    @property
    def judging(self) -> int:
        """Batches being judged now."""
        return len(self._running)

    @staticmethod
    def _key(spec: ScoreSpec) -> ScoreSpec:
        """What rows must share to be judged in one GRM prompt: everything but the responses, the
        caller's tenant (``spec.tenant``) included."""
        return dataclasses.replace(spec, responses=())

    def accepts(self, spec: ScoreSpec) -> bool:
        """Whether the item may wait for others: grouping is on, the judge is not ``single``, its responses
        leave room in a batch, and it has no seed (a seeded item must be repeatable, which other calls'
        rows would break)."""
        if self.window_s <= 0 or self.mode == "single" or spec.seed is not None:
            return False
        return len(spec.responses) < self.size

    def plan(self, specs: Iterable[ScoreSpec]) -> tuple[float, list[Place]]:
        """What entering ``specs`` now, in this order, would bring (what admission counts), as
        :meth:`enter` would seat them.

        Returns:
            The samples of the batches they would open (k each; a row joining a batch, whether another
            call's or one an earlier row of theirs opened, brings none), and the places in line of the
            other calls' batches they would join (they wait for those).
        """
        samples = 0.0
        joins: list[Place] = []
        seen: dict[ScoreSpec, tuple[int | None, _Batch | None]] = {}  # per key: open batch's size, if others'
        for spec in specs:
            key = self._key(spec)
            if key in seen:
                size, batch = seen[key]
            else:
                batch = self._open.get(key)
                size = None if batch is None else batch.size
            if size is not None and size + len(spec.responses) <= self.size:
                place = None if batch is None else batch.context.get(current_place)
                if place is not None:
                    joins.append(place)
            else:  # no batch collecting, or no room left in it: a new one, a full batch's work
                samples += self.work(spec, self.size)
                size, batch = 0, None
            size += len(spec.responses)
            seen[key] = (size if size < self.size else None, batch)
        return samples, joins

    def enter(self, spec: ScoreSpec, share: Share | None = None) -> Seat:
        """Seat ``spec``'s responses in the batch of its prompt and tenant collecting now, or open one.

        A batch it opens takes ``spec.k`` samples of ``share`` (the calling call's admission share)
        and holds them until it ends. The caller must :meth:`wait` for the seat or :meth:`leave` it.

        Raises:
            EngineNotReadyError: the grouper was closed (shutdown).
        """
        if self._closed:
            raise EngineNotReadyError("shutting down")
        key = self._key(spec)
        batch = self._open.get(key)
        if batch is not None and batch.size + len(spec.responses) > self.size:
            self._start(batch)  # no room: judge what is there, and open a new batch
            batch = None
        if batch is None:
            work = self.work(spec, self.size)
            batch = _Batch(key, contextvars.copy_context(), None if share is None else share.hand_over(work))
            self._open[key] = batch
            batch.timer = asyncio.get_running_loop().call_later(self.window_s, self._start, batch)
        seat = Seat(spec.responses, batch, asyncio.get_running_loop().create_future())
        batch.members.append(seat)
        if batch.size >= self.size:
            self._start(batch)
        return seat

    async def wait(self, seat: Seat) -> ItemResult:
        """The result of ``seat``'s responses; cancelling the waiter leaves the seat (:meth:`leave`).

        Raises:
            EngineNotReadyError: the grouper was closed (shutdown) before the batch was judged.
            Whatever judging the caller's own item alone raises.
        """
        try:
            return await asyncio.shield(seat.future)
        except asyncio.CancelledError:
            self.leave(seat)
            raise

    async def score(self, spec: ScoreSpec) -> ItemResult:
        """Score ``spec`` in a batch with other calls' items of the same prompt and tenant
        (:meth:`enter`, then :meth:`wait`).

        Raises:
            EngineNotReadyError: the grouper was closed (shutdown) before the batch was judged.
            Whatever judging the caller's own item alone raises.
        """
        return await self.wait(self.enter(spec))

    def leave(self, seat: Seat) -> None:
        """The seat's caller no longer waits (it left, or it is done): nothing more is judged for it.

        Its rows leave a batch still collecting; a batch already running is cancelled (aborted in the
        engine) only when every call in it has gone. Doing it twice, or after the result, does nothing.
        """
        if seat.future.done():
            if not seat.future.cancelled():
                seat.future.exception()  # its outcome came as its caller left: marked read, never logged
            return
        seat.future.cancel()  # so nothing is judged for it, and no outcome is set on it
        batch = seat.batch
        if batch.task is None:  # still collecting: the batch goes on without this call's responses
            batch.members.remove(seat)
            if not batch.members:
                self._start(batch)  # closes the empty batch
        elif seat.alone is not None:
            seat.alone.cancel()  # judged alone after a split: its engine work is its own
        elif all(m.future.done() for m in batch.members):
            batch.task.cancel()  # nobody is waiting any more: abort the engine work

    def _start(self, batch: _Batch) -> None:
        if batch.task is not None:
            return
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        if batch.timer is not None:
            batch.timer.cancel()
        if not batch.members:
            batch.end()
            return
        self._running.add(batch)
        batch.task = asyncio.get_running_loop().create_task(self._run(batch), context=batch.context)
        batch.task.add_done_callback(lambda _: self._ended(batch))

    def _ended(self, batch: _Batch) -> None:
        self._running.discard(batch)
        batch.end()

    async def _run(self, batch: _Batch) -> None:
        """Judge the batch. If its prompt does not fit the context, a group's calls still waiting are each
        judged alone (:meth:`_split`). A pairwise pool's would have nothing to pair with: instead each
        call whose row the failed pairs blame (:func:`~server.serving.grouped_results.blamed_rows`) gets
        that pair's error, and the others are judged together again, until their pairs fit (a refused
        prompt costs no generation: its length is checked first)."""
        judged = batch.members
        while judged:  # until it is judged, or every call got its error
            try:
                return await self._together(batch.key, judged)
            except BaseException as exc:
                waiting = [m for m in judged if not m.future.done()]
                if len(judged) < 2 or not waiting or not is_too_long(exc):
                    settle(judged, exc)
                    if not isinstance(exc, Exception):
                        raise
                    return
                blamed = blamed_rows(exc, [r for m in judged for r in m.responses]) if self.mode == "pairwise" else {}
                guilty = [(m, i) for m in waiting for i in range(m.offset, m.offset + len(m.responses)) if i in blamed]
                if not guilty:  # a group, or a failure that names none of their pairs
                    return await self._split(batch, waiting)
                for m, i in guilty:
                    settle([m], blamed[i])
                judged = [m for m in waiting if not m.future.done()]

    async def _together(self, spec: ScoreSpec, members: list[Seat]) -> None:
        """Judge ``members``' rows as one item and give each its part (raises what judging raises)."""
        offset = 0
        for m in members:
            m.offset, offset = offset, offset + len(m.responses)
        combined_spec = dataclasses.replace(spec, responses=tuple(r for m in members for r in m.responses))
        combined = await self.judge(combined_spec, f"grp-{uuid.uuid4().hex[:16]}")
        if self.on_batch is not None:
            self.on_batch(combined, len(members))
        sizes = [len(m.responses) for m in members]
        prompt_shares = exact_shares(combined.prompt_tokens, sizes)
        generation_shares = exact_shares(combined.generation_tokens, sizes)
        for m, prompt, generation in zip(members, prompt_shares, generation_shares, strict=True):
            if not m.future.done():
                m.future.set_result(share_of(combined, m.offset, len(m.responses), (prompt, generation)))

    async def _split(self, batch: _Batch, waiting: list[Seat]) -> None:
        """Other calls' rows made the prompt too long: each call still waiting is judged on its own item
        instead, in a task of its own that its caller's leaving cancels (those that left are not)."""
        spec, share = batch.key, batch.share
        if share is not None:  # each call judged alone on the books, off them when it ends
            share.resize(sum(self.work(spec, len(m.responses)) for m in waiting))
        for m in waiting:
            m.alone = asyncio.get_running_loop().create_task(self._alone(spec, m))
            if share is not None:
                done = functools.partial(judged_alone, share, self.work(spec, len(m.responses)))
                m.alone.add_done_callback(done)
        await asyncio.gather(*(m.alone for m in waiting if m.alone is not None), return_exceptions=True)

    async def _alone(self, spec: ScoreSpec, member: Seat) -> None:
        """Judge one call's rows without the rest of its batch; its outcome is its own."""
        if member.future.done():
            return
        try:
            own = dataclasses.replace(spec, responses=member.responses)
            result = await self.judge(own, f"grp-{uuid.uuid4().hex[:16]}")
        except BaseException as exc:
            settle([member], exc)
            if not isinstance(exc, Exception):
                raise
            return
        if self.on_batch is not None:
            self.on_batch(result, 1)
        if not member.future.done():
            member.future.set_result(result)

    async def close(self) -> None:
        """Shutdown: every call still waiting gets :class:`EngineNotReadyError` (503 ``not_ready``), and
        batches being judged are cancelled (their engine work aborted)."""
        self._closed = True
        for batch in list(self._open.values()):
            if batch.timer is not None:
                batch.timer.cancel()
            settle(batch.members, EngineNotReadyError("shutting down"))
            batch.end()
        self._open.clear()
        running = list(self._running)
        for batch in running:
            settle(batch.members, EngineNotReadyError("shutting down"))
            assert batch.task is not None
            batch.task.cancel()
        for batch in running:
            assert batch.task is not None
            with contextlib.suppress(BaseException):
                await batch.task
