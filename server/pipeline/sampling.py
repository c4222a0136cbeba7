"""The pieces of the scoring pipeline one engine request at a time: items, requests, samples, votes.

:mod:`server.pipeline.scoring` plans an item's requests and runs them all at once;
:mod:`server.pipeline.rounds` runs the same requests in rounds (adaptive k). Both build on this:
an item's resolved :class:`ScoreSpec`, a :class:`Planned` engine request and its :class:`Generated`
samples (with two-pass guidance's continuations), parsing into :class:`Sample`, the meta RM's view of a
sample, and the vote over a group's kept samples.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Protocol

from meta_rm.base import Trajectory
from server.engines.base import Completion, GenerationRequest, GenerationResult, PromptTooLongError
from server.pipeline.aggregation import vote_response
from server.pipeline.domain import ItemResult, ResponseScore, Sample, SampleStatus
from server.pipeline.errors import SetTooLongError
from server.pipeline.judges import Aggregation, Guidance, Judge, ParseError, judged_sets, pools, votes_of
from server.pipeline.judges.deepseek import DeepSeekGRM
from server.pipeline.shuffling import (
    Permutation,
    apply_permutation,
    balanced_permutations,
    group_permutations,
    unpermute_scores,
)
from server.pipeline.soft_values import SOFT_LOGPROBS
from server.pipeline.soft_votes import Judged, Written, soften
from server.pipeline.spec import Linked, ScoreSpec

__all__ = ["Generate", "Generated", "Linked", "Planned", "Rater", "ScoreSpec", "generate_planned", "vote_groups"]

SEED_BITS = 31
DEEPSEEK_GRM = DeepSeekGRM()


@dataclass(frozen=True)
class Planned:
    """One engine request of an item's plan (:meth:`Scorer.plan`) and what its samples judge."""

    group: int
    members: tuple[int, ...]  # caller indices of the group's responses
    permutation: Permutation  # indices into ``members`` in shown order
    request: GenerationRequest
    continue_cut: bool = False  # complete samples the budget cut (two-pass guidance)
    judge: Judge = DEEPSEEK_GRM  # whose prompt it is: it parses the samples
    aggregation: Aggregation = "mean"  # how a pairwise verdict becomes votes


@dataclass(frozen=True)
class Generated:
    """A planned request's samples, after any continuations."""

    completions: list[Completion]
    continued: list[bool]  # per completion: whether a continuation completed it
    prompt_tokens: int  # the request's prompt plus every continuation's (mostly prefix-cached) prompt
    written: list[Written] = dataclasses.field(default_factory=list)  # per completion: its verdict's tokens


@dataclass(frozen=True)
class GroupOrders:
    """One GRM group of an item and the response orders its k samples see (:func:`group_orders`)."""

    group: int
    members: tuple[int, ...]  # caller indices of the group's responses
    perms: list[Permutation]  # the k orders, in draw order (whole rotations)
    orders: list[tuple[Permutation, int]]  # the distinct orders and their counts, first seen first
    seeds: list[int] | None  # per distinct order, its engine request's seed (None without a spec seed)


def group_orders(spec: ScoreSpec, judge: Judge, max_group_size: int) -> list[GroupOrders]:
    """Every response set one of ``judge``'s prompts judges (:func:`~server.pipeline.judges.judged_sets`:
    groups, single responses or pairs) with its balanced orders and per-order seeds, drawn from one
    generator seeded by ``spec.seed``: what the plain plan sends at once and adaptive rounds send in
    parts, so both ask for the same samples."""
    rng = random.Random(spec.seed) if spec.seed is not None else random.Random()
    out = []
    for g, members in enumerate(judged_sets(len(spec.responses), max_group_size, judge, spec.pairing)):
        perms = balanced_permutations(len(members), spec.k, rng)
        orders = group_permutations(perms)
        seeds = [rng.getrandbits(SEED_BITS) for _ in orders] if spec.seed is not None else None
        out.append(GroupOrders(g, tuple(members), perms, orders, seeds))
    return out


def plan_request(
    judge: Judge,
    spec: ScoreSpec,
    group: int,
    members: Sequence[int],
    perm: Permutation,
    guidance: Guidance | None,
    *,
    request_id: str,
    n: int,
    seed: int | None,
) -> Planned:
    """One engine request: ``n`` samples of the set ``members`` shown in order ``perm``, in ``judge``'s
    prompt, under the item's sampling choices and, when given, format guidance."""
    texts = apply_permutation([spec.responses[i] for i in members], perm)
    prompt = judge.render(spec.messages, texts, spec.principles, spec.reference)
    request = GenerationRequest(
        request_id=request_id,
        prompt=prompt.user,
        system=prompt.system,
        messages=prompt.messages,
        raw=prompt.raw,
        n=n,
        temperature=spec.temperature,
        top_p=spec.top_p,
        repetition_penalty=judge.sampling.repetition_penalty,
        max_tokens=guidance.max_tokens if guidance else spec.max_tokens,
        seed=seed,
        guide_regex=guidance.regex if guidance else None,
        tenant=spec.tenant,
        logprobs=SOFT_LOGPROBS if spec.votes == "soft" else None,
    )
    return Planned(
        group, tuple(members), perm, request, bool(guidance and guidance.continue_cut), judge, spec.aggregation
    )


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
    written = [Written(request, c.logprobs) for c in completions]
    if not planned.continue_cut:
        return Generated(completions, continued, result.prompt_tokens, written)
    n, judge = len(planned.members), planned.judge
    todo: list[tuple[int, str, GenerationRequest]] = []
    for i, c in enumerate(completions):
        if c.finish_reason != "length" or _parses(judge, c.text, n):
            continue
        cont = judge.continuation(c.text, n)
        if cont is None:  # not a prefix of the guided format: left unparseable, never guessed
            continue
        kept, regex = cont
        todo.append((i, kept, dataclasses.replace(
            request,
            request_id=f"{request.request_id}-c{i}",
            n=1,
            max_tokens=judge.continuation_reserve(n),  # type: ignore[attr-defined]
            seed=None if request.seed is None else (request.seed + i + 1) % (1 << SEED_BITS),
            guide_regex=regex,
            assistant_prefix=kept,
        )))  # fmt: skip
    if not todo:
        return Generated(completions, continued, result.prompt_tokens, written)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(generate(r)) for _, _, r in todo]
    prompt_tokens = result.prompt_tokens
    for (i, kept, cont_request), task in zip(todo, tasks, strict=True):
        extra = task.result()
        prompt_tokens += extra.prompt_tokens
        tail = extra.completions[0]
        cut = completions[i]
        completions[i] = Completion(kept + tail.text, tail.finish_reason, cut.num_tokens + tail.num_tokens)
        continued[i] = True
        written[i] = Written(cont_request, tail.logprobs, len(kept))  # the verdict is the continuation's
    return Generated(completions, continued, prompt_tokens, written)


def _parses(judge: Judge, text: str, n_responses: int) -> bool:
    try:
        judge.parse(text, n_responses)
    except ParseError:
        return False
    return True


class Rater(Protocol):
    """What the pipeline needs of a meta RM: a rating per trajectory (see :class:`meta_rm.base.MetaRM`)."""

    async def score(self, trajectories: Sequence[Trajectory]) -> list[float]: ...


def to_sample(planned: Planned, completion: Completion, continued: bool, *, kept: bool = False) -> Sample:
    """One completion parsed by its judge; its votes (:func:`~server.pipeline.judges.votes_of`) mapped
    back to the caller's order. With ``kept`` (no meta RM to choose), a parsed sample votes."""
    n = len(planned.members)
    text, finish_reason, tokens = completion.text, completion.finish_reason, completion.num_tokens
    try:
        parsed = planned.judge.parse(text, n)
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
        scores=unpermute_scores(votes_of(parsed, planned.judge, planned.aggregation), planned.permutation),
        preference=parsed.preference,
        kept=kept,
    )


def trajectory_of(spec: ScoreSpec, sample: Sample, members: tuple[int, ...]) -> Trajectory:
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


async def generate_samples(
    generate: Generate, planned: Planned, *, kept: bool = False
) -> tuple[list[Sample], int, int]:
    """Run one planned request and parse its samples (:func:`to_sample`, ``kept`` passed on; with soft
    votes, read their soft scores, :func:`~server.pipeline.soft_votes.soften`) as soon as it returns, on
    its own turn of the event loop, not all of an item's at once (64 responses, all pairs, k=32: 64,512
    samples). Returns them with the request's prompt and generation tokens (soft votes' scoring passes'
    included).

    Raises:
        SetTooLongError: the engine's PromptTooLongError, naming the set (its members).
    """
    try:
        result = await generate_planned(generate, planned)
    except PromptTooLongError as exc:
        raise SetTooLongError(str(exc), planned.members) from exc
    samples = [
        to_sample(planned, c, cont, kept=kept) for c, cont in zip(result.completions, result.continued, strict=True)
    ]
    prompt_tokens, generation_tokens = result.prompt_tokens, sum(c.num_tokens for c in result.completions)
    if planned.request.logprobs is not None:  # soft votes: read each parsed sample's from its logprobs
        judged = Judged(planned.judge, planned.aggregation, planned.permutation, planned.request.request_id)
        samples, cost = await soften(generate, samples, result.written, result.continued, judged)
        prompt_tokens += cost.prompt_tokens
        generation_tokens += cost.generation_tokens
    return samples, prompt_tokens, generation_tokens


def indices_by_set(samples: Sequence[Sample], n_sets: int) -> list[list[int]]:
    """Per judged set (``0 .. n_sets - 1``), the indices of its samples, in order: one pass, where a
    scan per set would be quadratic in an ``all_pairs`` pool's m(m-1)/2 pairs."""
    out: list[list[int]] = [[] for _ in range(n_sets)]
    for i, s in enumerate(samples):
        out[s.group].append(i)
    return out


def vote_groups(
    spec: ScoreSpec,
    samples: list[Sample],
    groups: list[tuple[int, ...]],
    *,
    full_votes: int,
    sizes: Sequence[int] | None = None,
) -> ItemResult:
    """Each response's vote: the kept votes it received in every set that judged it (its one group for
    a pointwise judge, each of its pairs for a pairwise one). ``full_votes`` is how many samples vote
    per set at full k: the k-normalised sum is the mean times that, one set's worth however many sets
    judged the response (so a pairwise judge's is not a count of its pairs); ``sizes`` is each
    response's pool size (default: the size of its first set)."""
    n = len(spec.responses)
    values: list[list[float]] = [[] for _ in range(n)]
    parsed_count, sets = [0] * n, [0] * n
    by_set = indices_by_set(samples, len(groups))  # once: a scan per set is quadratic in a pool's pairs
    for g, members in enumerate(groups):
        parsed = [samples[i] for i in by_set[g] if samples[i].status is SampleStatus.PARSED]
        ballots = (s.ballot(spec.votes) for s in parsed if s.kept)
        voters = [b for b in ballots if b is not None]
        for local, caller in enumerate(members):
            sets[caller] += 1
            parsed_count[caller] += len(parsed)
            values[caller].extend(v[local] for v in voters)
    scores: list[ResponseScore] = [
        vote_response(values[i], parsed_count[i], full_votes=full_votes, judged=sets[i] > 0) for i in range(n)
    ]
    if sizes is None:
        sizes = [0] * n
        for members in reversed(groups):
            for caller in members:
                sizes[caller] = len(members)  # type: ignore[index]
    return ItemResult(
        responses=scores,
        samples=samples,
        k=spec.k,
        groups=[list(m) for m in groups],
        group_sizes=list(sizes),
        k_used=spec.k if groups else 0,  # no set judged (a pairwise judge's lone response): none drawn
        votes=spec.votes,
    )


def pool_sizes(spec: ScoreSpec, judge: Judge, max_group_size: int) -> list[int]:
    """Per response, how many responses its pool holds (judged together or against each other); 1 for a
    single-response judge, which judges each response alone."""
    if judge.mode == "single":
        return [1] * len(spec.responses)
    sizes = [0] * len(spec.responses)
    for pool in pools(len(spec.responses), max_group_size, judge):
        for caller in pool:
            sizes[caller] = len(pool)
    return sizes


def groups_of(plan: list[Planned]) -> list[tuple[int, ...]]:
    groups: dict[int, tuple[int, ...]] = {}
    for p in plan:
        groups.setdefault(p.group, p.members)
    return [groups[g] for g in sorted(groups)]
