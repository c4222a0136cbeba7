"""The scoring pipeline: candidates -> prompts -> engine (k samples) -> parse -> vote.

For one item (a conversation and its responses):

1. the responses are split into groups of at most ``max_group_size`` judged in one prompt;
2. each group gets ``k`` balanced response orders (:mod:`server.shuffling`); equal orders are sent
   as one engine request with ``n=count`` so they share the prompt's KV cache;
3. every sample is parsed; an unparseable one is kept for audit but never votes;
4. the parsed samples' scores, mapped back to the caller's order, are summed per response.

All engine requests of an item (and of a batch) run concurrently, so vLLM batches them. Cancelling
the caller's task cancels them all, which aborts them in the engine.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from server.aggregation import vote
from server.domain import ItemResult, Message, ResponseScore, Sample, SampleStatus
from server.engines.base import Engine, GenerationRequest, GenerationResult
from server.parsing import ParseError, guidance_regex, parse_sample
from server.prompts import Template
from server.shuffling import (
    Permutation,
    apply_permutation,
    balanced_permutations,
    group_permutations,
    split_groups,
    unpermute_scores,
)

_SEED_BITS = 31


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


@dataclass(frozen=True)
class _Planned:
    group: int
    members: tuple[int, ...]  # caller indices of the group's responses
    permutation: Permutation  # indices into ``members`` in shown order
    request: GenerationRequest


class Scorer:
    """Runs the GRM pipeline on an engine.

    Args:
        engine: where samples come from.
        template: the GRM prompt template.
        max_group_size: responses judged together in one prompt; larger items are split.
        format_guidance: constrain generation to the three-line format with a regex.
    """

    def __init__(self, engine: Engine, template: Template, *, max_group_size: int, format_guidance: bool) -> None:
        self.engine = engine
        self.template = template
        self.max_group_size = max_group_size
        self.format_guidance = format_guidance

    def plan(self, spec: ScoreSpec, request_id: str) -> list[_Planned]:
        """The engine requests for one item (pure apart from the seeded RNG)."""
        rng = random.Random(spec.seed) if spec.seed is not None else random.Random()
        planned = []
        for g, members in enumerate(split_groups(len(spec.responses), self.max_group_size)):
            texts = [spec.responses[i] for i in members]
            perms = balanced_permutations(len(members), spec.k, rng)
            for j, (perm, count) in enumerate(group_permutations(perms)):
                request = GenerationRequest(
                    request_id=f"{request_id}-g{g}-p{j}",
                    prompt=self.template.render(spec.messages, apply_permutation(texts, perm)),
                    n=count,
                    temperature=spec.temperature,
                    top_p=spec.top_p,
                    max_tokens=spec.max_tokens,
                    seed=rng.getrandbits(_SEED_BITS) if spec.seed is not None else None,
                    guide_regex=guidance_regex(len(members), spec.max_tokens) if self.format_guidance else None,
                )
                planned.append(_Planned(g, tuple(members), perm, request))
        return planned

    async def score(self, spec: ScoreSpec, request_id: str | None = None) -> ItemResult:
        """Score one item.

        Raises:
            server.engines.EngineError: if the engine fails (not for unparseable samples).
        """
        plan = self.plan(spec, request_id or uuid.uuid4().hex)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self.engine.generate(p.request)) for p in plan]
        return _collect(spec, plan, [t.result() for t in tasks])

    async def score_many(self, specs: Sequence[ScoreSpec], request_id: str | None = None) -> list[ItemResult]:
        """Score several items concurrently (one RL rollout batch)."""
        base = request_id or uuid.uuid4().hex
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self.score(s, f"{base}-i{i}")) for i, s in enumerate(specs)]
        return [t.result() for t in tasks]


def _to_sample(planned: _Planned, text: str, finish_reason: str | None, tokens: int) -> Sample:
    n = len(planned.members)
    try:
        parsed = parse_sample(text, n)
    except ParseError:
        return Sample(planned.group, planned.permutation, text, finish_reason, tokens, SampleStatus.UNPARSEABLE)
    return Sample(
        group=planned.group,
        permutation=planned.permutation,
        text=text,
        finish_reason=finish_reason,
        generation_tokens=tokens,
        status=SampleStatus.PARSED,
        principles=parsed.principles,
        critique=parsed.critique,
        scores=unpermute_scores(parsed.scores, planned.permutation),
    )


def _collect(spec: ScoreSpec, plan: list[_Planned], results: list[GenerationResult]) -> ItemResult:
    samples: list[Sample] = []
    prompt_tokens = generation_tokens = 0
    for planned, result in zip(plan, results, strict=True):
        prompt_tokens += result.prompt_tokens
        for c in result.completions:
            generation_tokens += c.num_tokens
            samples.append(_to_sample(planned, c.text, c.finish_reason, c.num_tokens))

    groups = _groups_of(plan)
    scores: list[ResponseScore | None] = [None] * len(spec.responses)
    for g, members in enumerate(groups):
        parsed = [s for s in samples if s.group == g and s.status is SampleStatus.PARSED]
        voted = vote([s.scores for s in parsed if s.scores is not None], len(members), len(parsed))
        for local, caller in enumerate(members):
            scores[caller] = voted[local]
    return ItemResult(
        responses=[s for s in scores if s is not None],
        samples=samples,
        k=spec.k,
        prompt_tokens=prompt_tokens,
        generation_tokens=generation_tokens,
        groups=[list(m) for m in groups],
    )


def _groups_of(plan: list[_Planned]) -> list[tuple[int, ...]]:
    groups: dict[int, tuple[int, ...]] = {}
    for p in plan:
        groups.setdefault(p.group, p.members)
    return [groups[g] for g in sorted(groups)]
