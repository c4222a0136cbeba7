"""The scoring pipeline: candidates -> prompts -> engine (k samples) -> parse -> meta-RM filter -> vote.

For one item (a conversation and its responses):

1. the responses are split into groups of at most ``max_group_size`` judged in one prompt;
2. each group gets ``k`` balanced response orders (:mod:`server.pipeline.shuffling`); equal orders are sent
   as one engine request with ``n=count`` so they share the prompt's KV cache;
3. with format guidance and a budget that allows it, a sample the budget cut before its scores is
   completed by a short guided continuation of its own text (:func:`server.pipeline.parsing.plan_guidance`);
   every sample is parsed; an unparseable one is kept for audit but never votes;
4. with a meta RM, every parsed sample is rated and only the ``k_meta`` best of each group vote
   (guided voting); without one, every parsed sample votes;
5. the voting samples' scores, mapped back to the caller's order, are summed per response.

All engine requests of an item (and of a batch) run concurrently, so vLLM batches them. Cancelling
the caller's task cancels them all, which aborts them in the engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Protocol

from meta_rm.base import Trajectory
from meta_rm.selection import default_k_meta, select_top_k
from server.engines.base import Completion, GenerationRequest, GenerationResult
from server.pipeline.aggregation import vote
from server.pipeline.domain import ItemResult, Message, ResponseScore, Sample, SampleStatus
from server.pipeline.parsing import ParseError, continuation, continuation_reserve, parse_sample, plan_guidance
from server.pipeline.prompts import Template
from server.pipeline.shuffling import (
    Permutation,
    apply_permutation,
    balanced_permutations,
    group_permutations,
    split_groups,
    unpermute_scores,
)

_SEED_BITS = 31
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreSpec:
    """One item to score, with every sampling choice already resolved."""

    messages: tuple[Message, ...]
    responses: tuple[str, ...]
    k: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None = None
    k_meta: int | None = None  # voting samples per group when a meta RM is set (default k // 2)
    principles: tuple[str, ...] | None = None  # a user rubric: judge by these instead of the GRM's own
    reference: str | None = None  # a reference answer: judge correctness against it
    tenant: str = ""  # whose work it is (the engine's work gate serves tenants fairly)


@dataclass(frozen=True)
class Planned:
    """One engine request of an item's plan (:meth:`Scorer.plan`) and what its samples judge."""

    group: int
    members: tuple[int, ...]  # caller indices of the group's responses
    permutation: Permutation  # indices into ``members`` in shown order
    request: GenerationRequest
    continue_cut: bool = False  # complete samples the budget cut (two-pass guidance)


@dataclass(frozen=True)
class Generated:
    """A planned request's samples, after any continuations."""

    completions: list[Completion]
    continued: list[bool]  # per completion: whether a continuation completed it
    prompt_tokens: int  # the request's prompt plus every continuation's (mostly prefix-cached) prompt


Generate = Callable[[GenerationRequest], Coroutine[object, object, GenerationResult]]


async def generate_planned(generate: Generate, planned: Planned) -> Generated:
    """Run one planned request; with two-pass guidance, complete every sample the budget cut.

    The continuations of one request run concurrently as soon as it returns; each starts from the
    same prompt plus the cut sample's kept text, so the engine's prefix cache holds most of it.
    Benchmarks pass their own ``generate`` (straight on AsyncLLM) to run exactly this plan.
    """
    request = planned.request
    result = await generate(request)
    completions = list(result.completions)
    continued = [False] * len(completions)
    if not planned.continue_cut:
        return Generated(completions, continued, result.prompt_tokens)
    n = len(planned.members)
    todo: list[tuple[int, str, GenerationRequest]] = []
    for i, c in enumerate(completions):
        if c.finish_reason != "length" or _parses(c.text, n):
            continue
        cont = continuation(c.text, n)
        if cont is None:  # not a prefix of the guided format: left unparseable, never guessed
            continue
        kept, regex = cont
        todo.append((i, kept, dataclasses.replace(
            request,
            request_id=f"{request.request_id}-c{i}",
            n=1,
            max_tokens=continuation_reserve(n),
            seed=None if request.seed is None else (request.seed + i + 1) % (1 << _SEED_BITS),
            guide_regex=regex,
            assistant_prefix=kept,
        )))  # fmt: skip
    if not todo:
        return Generated(completions, continued, result.prompt_tokens)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(generate(r)) for _, _, r in todo]
    prompt_tokens = result.prompt_tokens
    for (i, kept, _), task in zip(todo, tasks, strict=True):
        extra = task.result()
        prompt_tokens += extra.prompt_tokens
        tail = extra.completions[0]
        cut = completions[i]
        completions[i] = Completion(kept + tail.text, tail.finish_reason, cut.num_tokens + tail.num_tokens)
        continued[i] = True
    return Generated(completions, continued, prompt_tokens)


def _parses(text: str, n_responses: int) -> bool:
    try:
        parse_sample(text, n_responses)
    except ParseError:
        return False
    return True


class Rater(Protocol):
    """What the pipeline needs of a meta RM: a rating per trajectory (see :class:`meta_rm.base.MetaRM`)."""

    async def score(self, trajectories: Sequence[Trajectory]) -> list[float]: ...


class Scorer:
    """Runs the GRM pipeline on an engine's ``generate``.

    Args:
        template: the GRM prompt template.
        generate: sends one engine request (an engine's ``generate``; the server passes it through its
            work gate).
        max_group_size: responses judged together in one prompt; larger items are split.
        format_guidance: constrain generation to the three-line format with a regex.
        meta_rm: rates parsed samples so that only the best ``k_meta`` per group vote (started).
    """

    def __init__(
        self,
        template: Template,
        *,
        generate: Generate,
        max_group_size: int,
        format_guidance: bool,
        meta_rm: Rater | None = None,
    ) -> None:
        self.generate = generate
        self.template = template
        self.max_group_size = max_group_size
        self.format_guidance = format_guidance
        self.meta_rm = meta_rm

    def plan(self, spec: ScoreSpec, request_id: str) -> list[Planned]:
        """The engine requests for one item (pure apart from the seeded RNG)."""
        rng = random.Random(spec.seed) if spec.seed is not None else random.Random()
        planned = []
        for g, members in enumerate(split_groups(len(spec.responses), self.max_group_size)):
            texts = [spec.responses[i] for i in members]
            perms = balanced_permutations(len(members), spec.k, rng)
            guidance = plan_guidance(len(members), spec.max_tokens) if self.format_guidance else None
            for j, (perm, count) in enumerate(group_permutations(perms)):
                request = GenerationRequest(
                    request_id=f"{request_id}-g{g}-p{j}",
                    prompt=self.template.render(
                        spec.messages, apply_permutation(texts, perm), spec.principles, spec.reference
                    ),
                    n=count,
                    temperature=spec.temperature,
                    top_p=spec.top_p,
                    max_tokens=guidance.max_tokens if guidance else spec.max_tokens,
                    seed=rng.getrandbits(_SEED_BITS) if spec.seed is not None else None,
                    guide_regex=guidance.regex if guidance else None,
                    tenant=spec.tenant,
                )
                planned.append(Planned(g, tuple(members), perm, request, bool(guidance and guidance.continue_cut)))
        return planned

    async def score(self, spec: ScoreSpec, request_id: str | None = None) -> ItemResult:
        """Score one item.

        Raises:
            server.engines.EngineError: if the engine fails (not for unparseable samples).
            meta_rm.base.MetaRMError: if the meta RM fails.
        """
        plan = self.plan(spec, request_id or uuid.uuid4().hex)
        if log.isEnabledFor(logging.DEBUG):  # prompts are caller text: never logged above DEBUG
            for p in plan:
                log.debug("GRM prompt", extra={"engine_request_id": p.request.request_id, "prompt": p.request.prompt})
        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(generate_planned(self.generate, p)) for p in plan]
        generated = time.perf_counter()
        samples, prompt_tokens, generation_tokens = _samples_of(plan, [t.result() for t in tasks])
        groups = _groups_of(plan)
        k_meta = None
        if self.meta_rm is not None:
            k_meta = spec.k_meta if spec.k_meta is not None else default_k_meta(spec.k)
            samples = await self._guide(spec, samples, groups, k_meta)
        else:
            samples = [dataclasses.replace(s, kept=s.status is SampleStatus.PARSED) for s in samples]
        result = _vote(spec, samples, groups)
        result.prompt_tokens, result.generation_tokens, result.k_meta = prompt_tokens, generation_tokens, k_meta
        result.generate_seconds = generated - started
        result.meta_rm_seconds = time.perf_counter() - generated if self.meta_rm is not None else 0.0
        return result

    async def _guide(
        self, spec: ScoreSpec, samples: list[Sample], groups: list[tuple[int, ...]], k_meta: int
    ) -> list[Sample]:
        """Rate the parsed samples with the meta RM and mark the ``k_meta`` best of each group as kept."""
        assert self.meta_rm is not None
        rated = [i for i, s in enumerate(samples) if s.status is SampleStatus.PARSED]
        trajectories = [_trajectory(spec, samples[i], groups[samples[i].group]) for i in rated]
        ratings = await self.meta_rm.score(trajectories) if trajectories else []
        meta: list[float | None] = [None] * len(samples)
        for i, r in zip(rated, ratings, strict=True):
            meta[i] = r
        kept: set[int] = set()
        for g in range(len(groups)):
            members = [i for i, s in enumerate(samples) if s.group == g]
            parsed = [samples[i].status is SampleStatus.PARSED for i in members]
            chosen = select_top_k(parsed, [meta[i] for i in members], k_meta)
            kept.update(members[j] for j in chosen)
        return [dataclasses.replace(s, meta_score=meta[i], kept=i in kept) for i, s in enumerate(samples)]

    async def score_many(self, specs: Sequence[ScoreSpec], request_id: str | None = None) -> list[ItemResult]:
        """Score several items concurrently (one RL rollout batch)."""
        base = request_id or uuid.uuid4().hex
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self.score(s, f"{base}-i{i}")) for i, s in enumerate(specs)]
        return [t.result() for t in tasks]


def _to_sample(planned: Planned, completion: Completion, continued: bool) -> Sample:
    n = len(planned.members)
    text, finish_reason, tokens = completion.text, completion.finish_reason, completion.num_tokens
    try:
        parsed = parse_sample(text, n)
    except ParseError:
        status = SampleStatus.UNPARSEABLE
        return Sample(planned.group, planned.permutation, text, finish_reason, tokens, status, continued=continued)
    return Sample(
        group=planned.group,
        permutation=planned.permutation,
        text=text,
        finish_reason=finish_reason,
        generation_tokens=tokens,
        status=SampleStatus.PARSED,
        continued=continued,
        principles=parsed.principles,
        critique=parsed.critique,
        scores=unpermute_scores(parsed.scores, planned.permutation),
    )


def _trajectory(spec: ScoreSpec, sample: Sample, members: tuple[int, ...]) -> Trajectory:
    """What the meta RM sees: the responses in the order this sample saw them, and its output."""
    assert sample.scores is not None
    shown = [members[p] for p in sample.permutation]
    local = {caller: j for j, caller in enumerate(members)}
    return Trajectory(
        messages=spec.messages,
        responses=tuple(spec.responses[c] for c in shown),
        output=sample.text,
        scores=tuple(sample.scores[local[c]] for c in shown),
        reference=spec.reference,
    )


def _samples_of(plan: list[Planned], results: list[Generated]) -> tuple[list[Sample], int, int]:
    samples: list[Sample] = []
    prompt_tokens = generation_tokens = 0
    for planned, result in zip(plan, results, strict=True):
        prompt_tokens += result.prompt_tokens
        for c, continued in zip(result.completions, result.continued, strict=True):
            generation_tokens += c.num_tokens
            samples.append(_to_sample(planned, c, continued))
    return samples, prompt_tokens, generation_tokens


def _vote(spec: ScoreSpec, samples: list[Sample], groups: list[tuple[int, ...]]) -> ItemResult:
    scores: list[ResponseScore | None] = [None] * len(spec.responses)
    for g, members in enumerate(groups):
        parsed = [s for s in samples if s.group == g and s.status is SampleStatus.PARSED]
        voters = [s.scores for s in parsed if s.kept and s.scores is not None]
        voted = vote(voters, len(members), len(parsed))
        for local, caller in enumerate(members):
            scores[caller] = voted[local]
    sizes = [0] * len(spec.responses)
    for members in groups:
        for caller in members:
            sizes[caller] = len(members)
    return ItemResult(
        responses=[s for s in scores if s is not None],
        samples=samples,
        k=spec.k,
        groups=[list(m) for m in groups],
        group_sizes=sizes,
    )


def _groups_of(plan: list[Planned]) -> list[tuple[int, ...]]:
    groups: dict[int, tuple[int, ...]] = {}
    for p in plan:
        groups.setdefault(p.group, p.members)
    return [groups[g] for g in sorted(groups)]
