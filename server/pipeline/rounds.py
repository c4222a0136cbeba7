"""Adaptive k's rounds: an item's samples drawn a round at a time until its rule is satisfied.

Each group of an adaptive item (:class:`~server.pipeline.sampling.ScoreSpec` ``adaptive``) has the orders
and seeds the plain plan would give it (:meth:`server.pipeline.scoring.Scorer.plan`). A round draws
the next whole rotations of them: one engine request per distinct order, ``n`` its count, seeded to
continue that order's samples (vLLM samples child ``i`` of seed ``s`` with seed ``s + i``), so the
same prompts come back round after round and the engine's prefix cache keeps them. After each round
the new parsed samples are rated (with a meta RM) and the rule (:mod:`server.pipeline.adaptive`) says
which groups must draw more; the rest stop. Several items can decide together (a rerank's groups,
:class:`~server.pipeline.sampling.Linked`).

A deadline or a caller leaving cancels the current round's requests (aborting them in the engine),
as on the plain path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import TypeVar

from meta_rm.base import Trajectory
from meta_rm.selection import default_k_meta
from server.pipeline.adaptive import (
    AdaptiveOptions,
    StopReason,
    Tally,
    first_round,
    kept_count,
    next_round,
    rank_undecided,
    stderr_undecided,
)
from server.pipeline.confident import confident_undecided
from server.pipeline.domain import ItemResult, Sample, SampleStatus
from server.pipeline.judges import Judge, vote_scale
from server.pipeline.sampling import (
    Generate,
    GroupOrders,
    Linked,
    Planned,
    Rater,
    ScoreSpec,
    generate_samples,
    group_orders,
    plan_request,
    pool_sizes,
    trajectory_of,
    vote_groups,
)
from server.pipeline.shuffling import (
    group_permutations,
)


async def score_in_rounds(
    specs: Sequence[ScoreSpec],
    request_id: str,
    linked: Linked | None,
    *,
    judge: Judge,
    generate: Generate,
    max_group_size: int,
    format_guidance: bool,
    meta_rm: Rater | None,
) -> list[ItemResult]:
    """Draw every group's samples in rounds until the rule is satisfied (or k is drawn), then vote.

    ``specs`` share one :class:`~server.pipeline.adaptive.AdaptiveOptions`; with ``linked`` they decide
    together (the ``rank`` rule over all their documents), else ``specs`` is one item. The other
    arguments are the :class:`~server.pipeline.scoring.Scorer`'s.

    Raises:
        server.engines.EngineError: if the engine fails.
        meta_rm.base.MetaRMError: if the meta RM fails.
    """
    runs = [
        run
        for i, spec in enumerate(specs)
        for run in _runs(i, spec, request_id, linked, judge, format_guidance, max_group_size, meta_rm is not None)
    ]
    options = specs[0].adaptive
    for run in runs:
        run.target = first_round(options, run.size, run.spec.k, run.k_meta, run.scale)
    rounds, gen_seconds, meta_seconds = 0, 0.0, 0.0
    while True:
        todo = [run for run in runs if run.target > run.drawn]
        if not todo:
            break
        rounds += 1
        planned = [(run, p) for run in todo for p in run.next_requests(rounds)]
        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:  # each request's samples parsed as it returns
            tasks = await start_in_turns(tg, (generate_samples(generate, p, kept=meta_rm is None) for _, p in planned))
        gen_seconds += time.perf_counter() - started
        fresh: list[tuple[_GroupRun, int]] = []  # (run, index of a new parsed sample)
        for (run, p), task in zip(planned, tasks, strict=True):
            fresh += run.add(p, *task.result())
        for run in todo:
            run.drawn = run.target
        await asyncio.sleep(0)  # other calls run between the round's steps (a large pool's take a while)
        if meta_rm is not None and fresh:
            started = time.perf_counter()
            ratings = await meta_rm.score([run.trajectory(i) for run, i in fresh])
            meta_seconds += time.perf_counter() - started
            for (run, i), rating in zip(fresh, ratings, strict=True):
                run.samples[i] = dataclasses.replace(run.samples[i], meta_score=rating)
        # The rule is pure CPU work on the runs, which nothing else touches meanwhile: in a thread, the
        # event loop keeps serving other calls (all pairs of 64 responses: about 0.3 s of CPU a round).
        for g in await asyncio.to_thread(_undecided, runs, options, linked, specs):
            runs[g].target = next_round(runs[g].drawn, runs[g].size, runs[g].spec.k)
    results = []
    for i, spec in enumerate(specs):
        sizes = pool_sizes(spec, judge, max_group_size)
        mine = [run for run in runs if run.item == i]
        result = await asyncio.to_thread(_adaptive_result, spec, mine, options, sizes)  # as the rule, off the loop
        result.rounds, result.generate_seconds, result.meta_rm_seconds = rounds, gen_seconds, meta_seconds
        results.append(result)
    return results


T = TypeVar("T")
REQUESTS_PER_TURN = 256


async def start_in_turns(tg: asyncio.TaskGroup, calls: Iterable[Coroutine[object, object, T]]) -> list[asyncio.Task[T]]:
    """Start ``calls`` in ``tg``, :data:`REQUESTS_PER_TURN` per turn of the event loop: starting an engine
    request takes the gate and the engine some work, and an ``all_pairs`` pool of 64 responses sends 4032
    at once, which would hold every other call for a good part of a second. ``calls`` is read lazily,
    so the coroutines not started when the group fails are never made."""
    tasks: list[asyncio.Task[T]] = []
    for i, call in enumerate(calls):
        if i and i % REQUESTS_PER_TURN == 0:
            await asyncio.sleep(0)
        tasks.append(tg.create_task(call))
    return tasks


def _runs(
    item: int,
    spec: ScoreSpec,
    request_id: str,
    linked: Linked | None,
    judge: Judge,
    format_guidance: bool,
    max_group_size: int,
    rated: bool,
) -> list[_GroupRun]:
    """One run per GRM group of ``spec``, with the orders and seeds the plain plan gives it
    (:func:`~server.pipeline.sampling.group_orders`)."""
    prefix = request_id if linked is None else f"{request_id}-i{item}"
    k_meta = (spec.k_meta if spec.k_meta is not None else default_k_meta(spec.k)) if rated else None
    runs = []
    for group in group_orders(spec, judge, max_group_size):
        members = group.members
        documents = members if linked is None else tuple(linked.documents[item][c] for c in members)
        runs.append(_GroupRun(judge, format_guidance, spec, item, group, documents, k_meta,
                              f"{prefix}-g{group.group}"))  # fmt: skip
    return runs


class _GroupRun:
    """One group of an adaptive item: its orders (those of the plain plan), and what it drew so far."""

    def __init__(
        self,
        judge: Judge,
        format_guidance: bool,
        spec: ScoreSpec,
        item: int,
        group: GroupOrders,
        documents: tuple[int, ...],
        k_meta: int | None,
        request_id: str,
    ) -> None:
        self.judge, self.spec, self.item, self.group = judge, spec, item, group.group
        self.members, self.documents, self.perms, self.seeds = group.members, documents, group.perms, group.seeds
        self.orders = [perm for perm, _ in group.orders]
        self.k_meta, self.request_id = k_meta, request_id
        self.size = len(self.members)
        scale = vote_scale(judge, spec.aggregation)  # every vote lies in it: what the rules bound with
        self.scale = (scale.low, scale.high)
        self.drawn = 0
        self.target = 0
        self.samples: list[Sample] = []  # in the order drawn
        self.keys: list[tuple[int, int]] = []  # per sample: (its order, which sample of that order)
        self._starts: dict[str, tuple[int, int]] = {}  # per request id: its order and first sample
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.guidance = judge.guidance(self.size, spec.max_tokens) if format_guidance else None

    def next_requests(self, round_no: int) -> list[Planned]:
        """The engine requests for samples ``drawn .. target``: one per distinct order, ``n`` its count,
        seeded to continue the order's samples where the previous rounds left them."""
        before = self.perms[: self.drawn]
        planned = []
        for perm, count in group_permutations(self.perms[self.drawn : self.target]):
            j, first = self.orders.index(perm), before.count(perm)
            request_id = f"{self.request_id}-p{j}-r{round_no}"
            seed = None if self.seeds is None else self.seeds[j] + first
            planned.append(plan_request(self.judge, self.spec, self.group, self.members, perm, self.guidance,
                                        request_id=request_id, n=count, seed=seed))  # fmt: skip
            self._starts[request_id] = (j, first)
        return planned

    def add(
        self, planned: Planned, samples: list[Sample], prompt_tokens: int, generation_tokens: int
    ) -> list[tuple[_GroupRun, int]]:
        """Keep a request's parsed samples (:func:`~server.pipeline.sampling.generate_samples`); returns
        the new parsed ones (for the meta RM to rate)."""
        self.prompt_tokens += prompt_tokens
        self.generation_tokens += generation_tokens
        order, first = self._starts.pop(planned.request.request_id)
        fresh = []
        for i, sample in enumerate(samples):
            if sample.status is SampleStatus.PARSED:
                fresh.append((self, len(self.samples)))
            self.samples.append(sample)
            self.keys.append((order, first + i))
        return fresh

    def in_plan_order(self) -> list[Sample]:
        """The samples in the order the plain path lists them (by order, then sample of that order), so
        meta RM ties break as they would at full k."""
        return [self.samples[i] for i in sorted(range(len(self.samples)), key=self.keys.__getitem__)]

    def trajectory(self, i: int) -> Trajectory:
        return trajectory_of(self.spec, self.samples[i], self.members)

    def tally(self) -> Tally:
        """What the rules see: the parsed samples' scores (in the group's order) and ratings."""
        votes_with = self.spec.votes  # the rules count what the samples vote with (soft votes are fractions)
        samples = self.in_plan_order()
        parsed = [s for s in samples if s.status is SampleStatus.PARSED and s.ballot(votes_with) is not None]
        ratings = orders = None
        if self.k_meta is not None:
            ratings = tuple(s.meta_score if s.meta_score is not None else 0.0 for s in parsed)
            if self.judge.mode == "pairwise":  # each order keeps its share of the voters, as on the plain path
                orders = tuple(self.orders.index(s.permutation) for s in parsed)
        votes = tuple(b for s in parsed if (b := s.ballot(votes_with)) is not None)
        return Tally(self.spec.k, self.drawn, votes, self.size, self.scale, ratings, self.k_meta, orders)

    def kept_samples(self) -> list[Sample]:
        """The samples with ``kept`` set as the rules counted them (:meth:`Tally.kept`)."""
        samples = self.in_plan_order()
        parsed = [i for i, s in enumerate(samples) if s.status is SampleStatus.PARSED]
        voting = {parsed[j] for j in self.tally().kept()}
        # Without a meta RM every parsed sample came back kept (generate_samples): nothing to replace.
        return [
            s if s.kept == (i in voting) else dataclasses.replace(s, kept=i in voting) for i, s in enumerate(samples)
        ]


def _undecided(
    runs: list[_GroupRun], options: AdaptiveOptions, linked: Linked | None, specs: Sequence[ScoreSpec]
) -> set[int]:
    """The runs (indices) that must draw another round under ``options.rule``. A response judged in
    several sets (a pairwise judge's pairs) is one document: its votes pool over them."""
    tallies = [run.tally() for run in runs]
    documents = [run.documents for run in runs]
    if options.rule == "stderr":
        names = [[(run.item, doc) for doc in run.documents] for run in runs]
        return stderr_undecided(tallies, options.epsilon, options.k_min, names)
    items = [run.item for run in runs]
    n_documents = len(specs[0].responses) if linked is None else linked.n_documents
    anchored, top_n = (False, None) if linked is None else (linked.anchored, linked.top_n)
    if options.rule == "confident":
        return confident_undecided(
            tallies, documents, n_documents, options.delta, options.k_min, anchored=anchored, top_n=top_n, items=items
        )
    return rank_undecided(tallies, documents, n_documents, anchored=anchored, top_n=top_n, items=items)


def _adaptive_result(spec: ScoreSpec, runs: list[_GroupRun], options: AdaptiveOptions, sizes: list[int]) -> ItemResult:
    """One adaptive item's result: its groups' samples, their votes, and how far it went."""
    samples = [s for run in runs for s in run.kept_samples()]
    groups = [run.members for run in runs]
    k_meta = runs[0].k_meta if runs else None
    result = vote_groups(spec, samples, groups, full_votes=k_meta if k_meta is not None else spec.k, sizes=sizes)
    result.prompt_tokens = sum(run.prompt_tokens for run in runs)
    result.generation_tokens = sum(run.generation_tokens for run in runs)
    result.k_used = max((run.drawn for run in runs), default=0)  # no runs: a pairwise judge's lone response
    if k_meta is not None:
        result.k_meta = max(kept_count(run.drawn, spec.k, k_meta) for run in runs)
    stopped: StopReason = "k" if runs and all(run.drawn >= spec.k for run in runs) else options.rule
    result.adaptive, result.stop_reason = options.rule, stopped
    return result
