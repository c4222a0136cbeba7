"""The scoring pipeline: candidates -> prompts -> engine (k samples) -> parse -> meta-RM filter -> vote.

For one item (a conversation and its responses):

1. the responses are split into groups of at most ``max_group_size`` judged in one prompt;
2. each group gets ``k`` balanced response orders (:mod:`server.pipeline.shuffling`); equal orders are sent
   as one engine request with ``n=count`` so they share the prompt's KV cache;
3. with format guidance and a budget that allows it, a sample the budget cut before its scores is
   completed by a short guided continuation of its own text (:func:`server.pipeline.parsing.plan_guidance`);
   every sample is parsed; an unparseable one is kept for audit but never votes;
4. with a meta RM, every parsed sample is rated and only the ``k_meta`` best of each group vote
   (guided voting; a pair keeps each order's share of them); without one, every parsed sample votes;
5. the voting samples' scores, mapped back to the caller's order, are summed per response.

An adaptive item (``spec.adaptive``, :mod:`server.pipeline.adaptive`) draws the same samples in rounds
of whole rotations instead, and stops once its rule says the vote is decided (:meth:`Scorer.score_linked`
decides for several items at once: a rerank's groups).

All engine requests of an item (and of a batch) run concurrently, so vLLM batches them. Cancelling
the caller's task cancels them all, which aborts them in the engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence

from meta_rm.selection import default_k_meta, order_shares, select_top_k, select_top_k_by_order
from server.pipeline.domain import ItemResult, Sample, SampleStatus
from server.pipeline.judges import Judge
from server.pipeline.rounds import score_in_rounds, start_in_turns
from server.pipeline.sampling import (
    Generate,
    Generated,
    Linked,
    Planned,
    Rater,
    ScoreSpec,
    generate_planned,
    generate_samples,
    group_orders,
    groups_of,
    indices_by_set,
    plan_request,
    pool_sizes,
    trajectory_of,
    vote_groups,
)

# Names other modules import from here, where the scorer used to hold them.
__all__ = ["Generate", "Generated", "Linked", "Planned", "Rater", "ScoreSpec", "Scorer", "generate_planned"]

log = logging.getLogger(__name__)


class Scorer:
    """Runs the GRM pipeline on an engine's ``generate``.

    Args:
        judge: the judge profile (:mod:`server.pipeline.judges`): its prompts, parser and mode.
        generate: sends one engine request (an engine's ``generate``; the server passes it through its
            work gate).
        max_group_size: responses judged together in one prompt; larger items are split.
        format_guidance: constrain generation to the three-line format with a regex.
        meta_rm: rates parsed samples so that only the best ``k_meta`` per group vote (started).
    """

    def __init__(
        self,
        judge: Judge,
        *,
        generate: Generate,
        max_group_size: int,
        format_guidance: bool,
        meta_rm: Rater | None = None,
    ) -> None:
        self.generate = generate
        self.judge = judge
        self.max_group_size = max_group_size
        self.format_guidance = format_guidance
        self.meta_rm = meta_rm

    def plan(self, spec: ScoreSpec, request_id: str) -> list[Planned]:
        """The engine requests for one item (pure apart from the seeded RNG)."""
        planned = []
        for group in group_orders(spec, self.judge, self.max_group_size):
            g, members = group.group, group.members
            guidance = self.judge.guidance(len(members), spec.max_tokens) if self.format_guidance else None
            for j, (perm, count) in enumerate(group.orders):
                seed = group.seeds[j] if group.seeds is not None else None
                planned.append(plan_request(self.judge, spec, g, members, perm, guidance,
                                            request_id=f"{request_id}-g{g}-p{j}", n=count, seed=seed))  # fmt: skip
        return planned

    async def score(self, spec: ScoreSpec, request_id: str | None = None) -> ItemResult:
        """Score one item.

        Raises:
            server.engines.EngineError: if the engine fails (not for unparseable samples).
            meta_rm.base.MetaRMError: if the meta RM fails.
        """
        if spec.adaptive.rule != "off":
            (result,) = await self._score_adaptive([spec], request_id or uuid.uuid4().hex, None)
            return result
        plan = self.plan(spec, request_id or uuid.uuid4().hex)
        if log.isEnabledFor(logging.DEBUG):  # prompts are caller text: never logged above DEBUG
            for p in plan:
                log.debug("GRM prompt", extra={"engine_request_id": p.request.request_id, "prompt": p.request.prompt})
        started = time.perf_counter()
        voting = self.meta_rm is None  # every parsed sample votes, else the meta RM chooses
        async with asyncio.TaskGroup() as tg:
            tasks = await start_in_turns(tg, (generate_samples(self.generate, p, kept=voting) for p in plan))
        generated = time.perf_counter()
        samples: list[Sample] = []
        prompt_tokens = generation_tokens = 0
        for task in tasks:
            parsed, prompt, generation = task.result()
            samples += parsed
            prompt_tokens, generation_tokens = prompt_tokens + prompt, generation_tokens + generation
        groups = groups_of(plan)
        k_meta = None
        if self.meta_rm is not None:
            k_meta = spec.k_meta if spec.k_meta is not None else default_k_meta(spec.k)
            samples = await self._guide(spec, samples, groups, k_meta)
        full_votes = k_meta if k_meta is not None else spec.k
        sizes = pool_sizes(spec, self.judge, self.max_group_size)
        result = vote_groups(spec, samples, groups, full_votes=full_votes, sizes=sizes)
        result.prompt_tokens, result.generation_tokens, result.k_meta = prompt_tokens, generation_tokens, k_meta
        result.generate_seconds = generated - started
        result.meta_rm_seconds = time.perf_counter() - generated if self.meta_rm is not None else 0.0
        return result

    async def _guide(
        self, spec: ScoreSpec, samples: list[Sample], groups: list[tuple[int, ...]], k_meta: int
    ) -> list[Sample]:
        """Rate the parsed samples with the meta RM and mark the ``k_meta`` best of each group as kept; a
        pairwise judge's pair keeps each order's share of them (:func:`~meta_rm.selection.order_shares`),
        so that its position bias cancels in the kept votes as in all of them."""
        assert self.meta_rm is not None
        rated = [i for i, s in enumerate(samples) if s.status is SampleStatus.PARSED]
        trajectories = [trajectory_of(spec, samples[i], groups[samples[i].group]) for i in rated]
        ratings = await self.meta_rm.score(trajectories) if trajectories else []
        meta: list[float | None] = [None] * len(samples)
        for i, r in zip(rated, ratings, strict=True):
            meta[i] = r
        kept: set[int] = set()
        for members in indices_by_set(samples, len(groups)):
            parsed = [samples[i].status is SampleStatus.PARSED for i in members]
            if self.judge.mode == "pairwise":
                shown = {p: o for o, p in enumerate(dict.fromkeys(samples[i].permutation for i in members))}
                orders = [shown[samples[i].permutation] for i in members]
                shares, leftover = order_shares(k_meta, [orders.count(o) for o in range(len(shown))])
                chosen = select_top_k_by_order(parsed, [meta[i] for i in members], orders, shares, leftover)
            else:
                chosen = select_top_k(parsed, [meta[i] for i in members], k_meta)
            kept.update(members[j] for j in chosen)
        return [dataclasses.replace(s, meta_score=meta[i], kept=i in kept) for i, s in enumerate(samples)]

    async def score_many(self, specs: Sequence[ScoreSpec], request_id: str | None = None) -> list[ItemResult]:
        """Score several items concurrently (one RL rollout batch)."""
        base = request_id or uuid.uuid4().hex
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self.score(s, f"{base}-i{i}")) for i, s in enumerate(specs)]
        return [t.result() for t in tasks]

    async def score_linked(
        self, specs: Sequence[ScoreSpec], linked: Linked, request_id: str | None = None
    ) -> list[ItemResult]:
        """Score items whose responses are ranked together (a rerank's groups, ``linked``): adaptive
        items stop together, once the ranking over all of them is decided; others as :meth:`score_many`.

        Every spec must share one :class:`AdaptiveOptions`.

        Raises:
            ValueError: if the specs' adaptive options differ, or ``linked`` does not match them.
        """
        if len({s.adaptive for s in specs}) > 1:
            raise ValueError("linked items must share their adaptive options")
        if len(linked.documents) != len(specs) or any(
            len(d) != len(s.responses) for d, s in zip(linked.documents, specs, strict=True)
        ):
            raise ValueError("linked documents do not match the items' responses")
        if not specs or specs[0].adaptive.rule == "off":
            return await self.score_many(specs, request_id)
        return await self._score_adaptive(specs, request_id or uuid.uuid4().hex, linked)

    async def _score_adaptive(
        self, specs: Sequence[ScoreSpec], request_id: str, linked: Linked | None
    ) -> list[ItemResult]:
        return await score_in_rounds(
            specs,
            request_id,
            linked,
            judge=self.judge,
            generate=self.generate,
            max_group_size=self.max_group_size,
            format_guidance=self.format_guidance,
            meta_rm=self.meta_rm,
        )
