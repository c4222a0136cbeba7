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

Pairwise judges compare a pool's responses pair by pair, so a one-row call has nothing to be compared
with until other rows of its prompt arrive: rows meet here, in pools of up to ``max(2, max_group_size)``,
and each batch forms its pairs. A row still alone when the window ends is judged alone, which for a
pairwise judge means ``unpaired`` (a null score; 0.0 and unscored on the trainer routes). A
single-response judge (``mode: single``) judges every response in a prompt of its own, so grouping brings
it nothing: its rows are never held (:meth:`Grouper.accepts`).

Grouping can only help a call, never fail it: a batch whose prompt does not fit the engine's context
is judged again as its calls' items alone, so each call gets exactly the answer (or the error) its own
item gets. Token usage is split between the calls in integers that add up to the batch's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from server.engines.base import EngineNotReadyError, PromptTooLongError
from server.pipeline.domain import ItemResult, Sample
from server.pipeline.judges import Mode
from server.pipeline.scoring import ScoreSpec
from server.serving.gate import Place, current_place

Judge = Callable[[ScoreSpec, str], Awaitable[ItemResult]]


@dataclass
class _Member:
    responses: tuple[str, ...]
    future: asyncio.Future[ItemResult]
    offset: int = 0
    alone: asyncio.Task[None] | None = None  # its own judging, once its batch did not fit the context


@dataclass(eq=False)
class _Batch:
    key: ScoreSpec  # the shared prompt's spec, without responses
    # The opening call's context: the batch is judged in its place in line (admission's Place), where
    # admission counted its k samples, whichever call fills it or closes it.
    context: contextvars.Context
    members: list[_Member] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None

    @property
    def size(self) -> int:
        """Responses collected so far."""
        return sum(len(m.responses) for m in self.members)


class Grouper:
    """Collects items of the same prompt for a short window and judges each batch once.

    Args:
        judge: scores one (combined) item; called once per batch.
        window_s: how long the first item of a batch waits for others (0: no grouping).
        max_group_size: responses judged in one GRM prompt (a pairwise judge's pool: at least 2); a full
            batch is judged at once.
        on_batch: called with each finished batch's combined result and its number of calls (metrics).
        mode: the judge's mode: a ``single`` judge's rows are never held; a ``pairwise`` one's meet in pools.
    """

    def __init__(
        self,
        judge: Judge,
        *,
        window_s: float,
        max_group_size: int,
        on_batch: Callable[[ItemResult, int], None] | None = None,
        mode: Mode = "group",
    ) -> None:
        self.judge = judge
        self.window_s = window_s
        self.max_group_size = max_group_size
        self.on_batch = on_batch
        self.mode = mode
        # The responses a batch may collect: one GRM prompt's, or one pairwise pool's.
        self.size = max(2, max_group_size) if mode == "pairwise" else max_group_size
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

    def _joinable(self, spec: ScoreSpec) -> _Batch | None:
        batch = self._open.get(self._key(spec))
        return batch if batch is not None and batch.size + len(spec.responses) <= self.size else None

    def would_join(self, spec: ScoreSpec) -> bool:
        """Whether ``spec`` would join a batch already collecting (one that another call opened)."""
        return self._joinable(spec) is not None

    def joins(self, spec: ScoreSpec) -> Place | None:
        """The place in line of the batch ``spec`` would join (that of the call that opened it), if any:
        a joining row waits for that batch, not for its own call's place."""
        batch = self._joinable(spec)
        return None if batch is None else batch.context.get(current_place)

    def accepts(self, spec: ScoreSpec) -> bool:
        """Whether the item may wait for others: grouping is on, the judge shows several responses in a
        prompt or compares them in pairs (not ``single``), its responses leave room in a batch
        (:attr:`size`), and it has no seed (a seeded item must be repeatable, which other calls' rows
        would break)."""
        if self.window_s <= 0 or self.mode == "single" or spec.seed is not None:
            return False
        return len(spec.responses) < self.size

    async def score(self, spec: ScoreSpec) -> ItemResult:
        """Score ``spec`` in a batch with other calls' items of the same prompt and tenant.

        Cancelling the caller takes its responses out of a batch still collecting; a batch already
        running is cancelled (aborted in the engine) only when every call in it has gone.

        Raises:
            EngineNotReadyError: the grouper was closed (shutdown) before the batch was judged.
            Whatever judging the caller's own item alone raises.
        """
        if self._closed:
            raise EngineNotReadyError("shutting down")
        key = self._key(spec)
        batch = self._open.get(key)
        if batch is not None and batch.size + len(spec.responses) > self.size:
            self._start(batch)  # no room: judge what is there, and open a new batch
            batch = None
        if batch is None:
            batch = _Batch(key, contextvars.copy_context())
            self._open[key] = batch
            batch.timer = asyncio.get_running_loop().call_later(self.window_s, self._start, batch)
        member = _Member(spec.responses, asyncio.get_running_loop().create_future())
        batch.members.append(member)
        if batch.size >= self.size:
            self._start(batch)
        try:
            return await asyncio.shield(member.future)
        except asyncio.CancelledError:
            self._leave(batch, member)
            raise

    def _start(self, batch: _Batch) -> None:
        if batch.task is not None:
            return
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        if batch.timer is not None:
            batch.timer.cancel()
        if not batch.members:
            return
        self._running.add(batch)
        batch.task = asyncio.get_running_loop().create_task(self._run(batch), context=batch.context)
        batch.task.add_done_callback(lambda _: self._running.discard(batch))

    async def _run(self, batch: _Batch) -> None:
        spec = batch.key
        offset = 0
        for m in batch.members:
            m.offset, offset = offset, offset + len(m.responses)
        combined_spec = dataclasses.replace(spec, responses=tuple(r for m in batch.members for r in m.responses))
        try:
            combined = await self.judge(combined_spec, f"grp-{uuid.uuid4().hex[:16]}")
        except BaseException as exc:
            if len(batch.members) > 1 and _is_too_long(exc):
                # Other calls' rows made the prompt too long: each call is judged on its own item instead,
                # in a task of its own that its caller's leaving cancels.
                for m in batch.members:
                    m.alone = asyncio.get_running_loop().create_task(self._alone(spec, m))
                await asyncio.gather(*(m.alone for m in batch.members if m.alone is not None), return_exceptions=True)
                return
            _settle(batch.members, exc)
            if not isinstance(exc, Exception):
                raise
            return
        if self.on_batch is not None:
            self.on_batch(combined, len(batch.members))
        sizes = [len(m.responses) for m in batch.members]
        prompt_shares = exact_shares(combined.prompt_tokens, sizes)
        generation_shares = exact_shares(combined.generation_tokens, sizes)
        for m, prompt, generation in zip(batch.members, prompt_shares, generation_shares, strict=True):
            if not m.future.done():
                m.future.set_result(share_of(combined, m.offset, len(m.responses), (prompt, generation)))

    async def _alone(self, spec: ScoreSpec, member: _Member) -> None:
        """Judge one call's rows without the rest of its batch; its outcome is its own."""
        if member.future.done():
            return
        try:
            own = dataclasses.replace(spec, responses=member.responses)
            result = await self.judge(own, f"grp-{uuid.uuid4().hex[:16]}")
        except BaseException as exc:
            _settle([member], exc)
            if not isinstance(exc, Exception):
                raise
            return
        if self.on_batch is not None:
            self.on_batch(result, 1)
        if not member.future.done():
            member.future.set_result(result)

    def _leave(self, batch: _Batch, member: _Member) -> None:
        if batch.task is None:  # still collecting: the batch goes on without this call's responses
            batch.members.remove(member)
            if not batch.members:
                self._start(batch)  # closes the empty batch
            return
        if all(m.future.done() or m is member for m in batch.members):
            batch.task.cancel()  # nobody is waiting any more: abort the engine work
        elif member.alone is not None:
            member.alone.cancel()  # judged alone after a split: its engine work is its own
        elif not member.future.done():
            member.future.cancel()

    async def close(self) -> None:
        """Shutdown: every call still waiting gets :class:`EngineNotReadyError` (503 ``not_ready``), and
        batches being judged are cancelled (their engine work aborted)."""
        self._closed = True
        for batch in list(self._open.values()):
            if batch.timer is not None:
                batch.timer.cancel()
            _settle(batch.members, EngineNotReadyError("shutting down"))
        self._open.clear()
        running = list(self._running)
        for batch in running:
            _settle(batch.members, EngineNotReadyError("shutting down"))
            assert batch.task is not None
            batch.task.cancel()
        for batch in running:
            assert batch.task is not None
            with contextlib.suppress(BaseException):
                await batch.task


def _settle(members: list[_Member], exc: BaseException) -> None:
    """Give every member still waiting the batch's failure (a cancellation cancels their futures)."""
    for m in members:
        if m.future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            m.future.cancel()
        else:
            m.future.set_exception(exc)


def _is_too_long(exc: BaseException) -> bool:
    """Whether a judge's failure (perhaps inside task groups) is a prompt too long for the context."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_too_long(e) for e in exc.exceptions)
    return isinstance(exc, PromptTooLongError)


def exact_shares(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` as integers that sum to ``total`` (largest remainder;
    ties go to the earlier weight)."""
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def share_of(combined: ItemResult, offset: int, count: int, tokens: tuple[int, int]) -> ItemResult:
    """One call's part of a batch's result: its responses, the samples as they bear on them, its token share.

    A sample's permutation and scores are restricted to this call's responses (in the order shown);
    the group sizes stay those of the shared GRM prompt. ``tokens`` is the call's (prompt, generation)
    share of the batch's tokens (:func:`exact_shares`).
    """
    mine = range(offset, offset + count)
    samples = [_project(s, combined.groups[s.group], mine) for s in combined.samples]
    groups = [[c - offset for c in g if c in mine] for g in combined.groups]
    return ItemResult(
        responses=combined.responses[offset : offset + count],
        samples=samples,
        k=combined.k,
        prompt_tokens=tokens[0],
        generation_tokens=tokens[1],
        groups=groups,
        k_meta=combined.k_meta,
        generate_seconds=combined.generate_seconds,
        meta_rm_seconds=combined.meta_rm_seconds,
        group_sizes=combined.group_sizes[offset : offset + count],
        k_used=combined.k_used,
        adaptive=combined.adaptive,
        stop_reason=combined.stop_reason,
        rounds=combined.rounds,
    )


def _project(sample: Sample, members: list[int], mine: range) -> Sample:
    local = [j for j, c in enumerate(members) if c in mine]  # positions (within the group) of this call's
    position = {j: i for i, j in enumerate(local)}
    return dataclasses.replace(
        sample,
        permutation=tuple(position[p] for p in sample.permutation if p in position),
        scores=tuple(sample.scores[j] for j in local) if sample.scores is not None else None,
    )
