"""Soft votes: each score a sample wrote, replaced by the expectation of the judge's own distribution
over the scale's values at the position where it wrote it (``votes: "soft"``; docs/adaptive.md,
"Soft votes").

A soft request asks the engine for the top :data:`~server.pipeline.soft_values.SOFT_LOGPROBS` logprobs
of every generated position. vLLM returns them raw (``logprobs_mode="raw_logprobs"``, its default): the
model's distribution before temperature, top-p, penalties and the guidance mask, the written token
always among them. For each slot of a parsed sample's verdict (:meth:`Judge.slots`: where it wrote each
score, its preference, or its winner's label):

1. the slot's first character is mapped to the token that wrote it, by decoding the sample's token ids
   (:class:`_Reader`); the characters that token wrote before the value (a space, a brace: ``" 7"``) are
   its *fixed prefix*;
2. at that position every top token whose text is the fixed prefix and then (a prefix of) a value is a
   candidate (:func:`~server.pipeline.soft_values.classify`); the others are left out and the rest
   renormalised;
3. a candidate that spells a prefix of a longer value (``"1"`` on 1..10, where ``"10"`` is ``"1"`` then
   ``"0"``) is split by the distribution at the next position: the sample's own next position when it
   wrote that token, else a *scoring pass*: one engine request of the same prompt plus the sample's
   tokens up to the slot plus that token, ``max_tokens=1`` (its prompt mostly prefix-cached). A candidate
   holding less than :data:`~server.pipeline.soft_values.SKIP_SHARE` of the position's mass, or beyond
   the slot's cap (:data:`~server.pipeline.soft_values.MAX_PASSES_PER_SLOT`, likeliest first) or the
   sample's bound (:func:`~server.pipeline.soft_values.sample_pass_bound`, what admission books), is
   left out instead of passed; what the sample wrote is always read (no pass). A pass the engine
   refuses as too long makes the sample ``no_soft_score``;
4. the slots' distributions become the sample's soft votes
   (:func:`~server.pipeline.soft_values.verdict_votes`).

A sample whose every slot yields a distribution gets ``soft_scores`` and ``soft_source``: ``guided`` when
a guided continuation (two-pass format guidance) wrote its verdict, else ``sampled``. One for which any
slot cannot (no logprobs, a slot the decoded tokens do not line up with, a written value that is not one
of the scale's) becomes ``no_soft_score``: it is kept for audit with its hard scores and never votes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
from collections.abc import Awaitable, Callable, Sequence

from server.engines.base import GenerationRequest, GenerationResult, PromptTooLongError, TokenLogprobs
from server.pipeline.domain import Sample, SampleStatus, SoftSource
from server.pipeline.judges import Aggregation, Judge, ParseError, Slot
from server.pipeline.shuffling import Permutation, unpermute_scores
from server.pipeline.soft_values import (
    SKIP_SHARE,
    SOFT_LOGPROBS,
    Values,
    classify,
    needs_preference,
    sample_pass_bound,
    verdict_votes,
)

WINDOW = 6  # tokens of context an alternative is decoded after (enough for a merged space or a split character)

Top = dict[int, float]
NextTop = Callable[[tuple[int, ...]], Awaitable[Top | None]]


@dataclasses.dataclass(frozen=True)
class Written:
    """Where a completion's scored tokens came from: the request that wrote them, their logprobs (None
    when the engine gave none) and the character of the completion's text where they start (a guided
    continuation's tail starts after its kept text)."""

    request: GenerationRequest
    logprobs: TokenLogprobs | None
    offset: int = 0


class _Reader:
    """One completion's tokens as a soft vote reads them: what text each wrote, what each alternative
    would have, and the top logprobs where the sample did not go (a scoring pass, ``next_top``)."""

    def __init__(self, logprobs: TokenLogprobs, text: str, next_top: NextTop, budget: int) -> None:
        self.ids, self.top, self.decode = logprobs.token_ids, logprobs.top, logprobs.decode
        self.text = text
        self.next_top = next_top
        self.budget = budget  # scoring passes the sample may still take (sample_pass_bound)
        self._offsets: dict[int, int] = {0: 0}
        # A SentencePiece tokenizer decodes a sequence without the space its first token carries (Llama 2,
        # Mistral: "▁The" alone is "The"), where the engine's text, decoded after the prompt, keeps it:
        # what the decoded tokens lack at the start is that leading whitespace.
        full = self.decode(self.ids)
        lead = text[: len(text) - len(full)]
        self.shift = len(lead) if text.endswith(full) and not lead.strip() else 0

    def offset(self, i: int) -> int:
        """Characters of the text the first ``i`` tokens wrote."""
        if i not in self._offsets:
            self._offsets[i] = self.shift + len(self.decode(self.ids[:i]))
        return self._offsets[i]

    def position(self, char: int) -> int | None:
        """The token that wrote character ``char`` of the text, checked against the text (None: the
        decoded tokens do not line up with it)."""
        low, high = 0, len(self.ids)
        while low < high:  # the first p whose first p + 1 tokens reach past char
            middle = (low + high) // 2
            if self.offset(middle + 1) > char:
                high = middle
            else:
                low = middle + 1
        if low >= len(self.ids):
            return None
        written = self.decode(self.ids[: low + 1])
        if not self.text.startswith(written, self.shift) or not self.offset(low) <= char < self.offset(low + 1):
            return None
        return low

    def piece(self, context: Sequence[int], token: int) -> str | None:
        """The text ``token`` writes after ``context`` (None when decoding cannot tell)."""
        window = list(context[-WINDOW:])
        before, after = self.decode(window), self.decode([*window, token])
        return after[len(before) :] if after.startswith(before) else None

    def own(self, context: tuple[int, ...]) -> bool:
        """Whether the sample wrote ``context`` (its next position's logprobs are its own: no pass)."""
        return len(context) < len(self.ids) and context == self.ids[: len(context)]

    async def at(self, context: tuple[int, ...]) -> Top | None:
        """The top logprobs after ``context``: the sample's own when it wrote ``context``, else a pass."""
        if self.own(context):
            return self.top(len(context))
        return await self.next_top(context)

    async def distribution(self, slot: Slot, offset: int) -> dict[str, float] | None:
        """The judge's distribution over ``slot``'s values where it wrote it (None: it cannot be read)."""
        values = Values.of(slot.values, slot.spellings)
        start, written = slot.start - offset, self.text[slot.start - offset : slot.end - offset]
        if start < 0 or written not in values.reads:
            return None
        p = self.position(start)
        if p is None:
            return None
        fixed = self.text[self.offset(p) : start]
        masses = await self._walk(self.ids[:p], self.top(p), fixed, "", values, [values.pass_cap])
        return masses if masses.get(values.reads[written], 0.0) > 0 else None

    async def _walk(
        self, context: tuple[int, ...], top: Top, fixed: str, spelled: str, values: Values, cap: list[int]
    ) -> dict[str, float]:
        """The values reachable from a position (``spelled`` written so far in the slot), normalised."""
        resolved: dict[str, float] = {}
        opens: list[tuple[int, str, float]] = []
        for token, logprob in top.items():
            piece = self.piece(context, token)
            if piece is None or not piece.startswith(fixed):
                continue
            rest, mass = piece[len(fixed) :], math.exp(logprob)
            if not rest:  # writes nothing more (an end of sequence): ends a value already spelled
                if spelled in values.reads:
                    value = values.reads[spelled]
                    resolved[value] = resolved.get(value, 0.0) + mass
                continue
            kind, value = classify(spelled + rest, values)
            if kind == "value":
                resolved[value] = resolved.get(value, 0.0) + mass
            elif kind == "open":
                opens.append((token, value, mass))
        total = sum(resolved.values()) + sum(mass for _, _, mass in opens)
        # The likeliest first, and siblings before what follows them: a slot's passes (``cap``) and the
        # sample's (``budget``) are bounded, and an open alternative left without one is left out like
        # one under SKIP_SHARE (the rest renormalised).
        granted: set[int] = set()
        for token, _, mass in sorted(opens, key=lambda o: -o[2]):
            if not self.own((*context, token)):  # what the sample wrote costs no pass: always read
                if mass < SKIP_SHARE * total or cap[0] <= 0 or self.budget <= 0:
                    continue
                cap[0] -= 1
                self.budget -= 1
            granted.add(token)
        kept = [(token, prefix, mass) for token, prefix, mass in opens if token in granted]
        tops = await asyncio.gather(*(self.at((*context, token)) for token, _, _ in kept))
        for (token, prefix, mass), top_after in zip(kept, tops, strict=True):
            if top_after is None:
                continue
            for value, share in (await self._walk((*context, token), top_after, "", prefix, values, cap)).items():
                resolved[value] = resolved.get(value, 0.0) + mass * share
        norm = sum(resolved.values())
        return {v: m / norm for v, m in resolved.items()} if norm > 0 else {}


@dataclasses.dataclass
class SoftCost:
    """The scoring passes one planned request's soft votes took, and their tokens."""

    passes: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0


Generate = Callable[[GenerationRequest], Awaitable[GenerationResult]]


@dataclasses.dataclass(frozen=True)
class Judged:
    """What one planned request's samples judged: the judge, its aggregation, the responses shown (how
    many, in which order) and the request's id (its scoring passes' ids start with it)."""

    judge: Judge
    aggregation: Aggregation
    permutation: Permutation
    request_id: str


async def soften(
    generate: Generate, samples: Sequence[Sample], written: Sequence[Written], continued: Sequence[bool], judged: Judged
) -> tuple[list[Sample], SoftCost]:
    """``samples`` (one planned request's) with their soft scores; a parsed one whose scores cannot be
    read becomes ``no_soft_score``. ``written`` and ``continued`` are per sample: where its tokens came
    from and whether a guided continuation completed it. Scoring passes go through ``generate`` (the
    server's work gate); each sample counts those it started (``soft_passes``).
    """
    judge, aggregation, n = judged.judge, judged.aggregation, len(judged.permutation)
    cost, counter = SoftCost(), itertools.count()
    passes: dict[tuple[str, tuple[int, ...]], asyncio.Task[Top | None]] = {}

    def next_top_of(source: GenerationRequest, started: list[int]) -> NextTop:
        async def run(ids: tuple[int, ...]) -> Top | None:
            request = dataclasses.replace(
                source, request_id=f"{judged.request_id}-v{next(counter)}", n=1, max_tokens=1, temperature=0.0,
                top_p=1.0, seed=None, guide_regex=None, logprobs=SOFT_LOGPROBS, answer_token_ids=ids,
            )  # fmt: skip
            result = await generate(request)
            cost.passes += 1
            cost.prompt_tokens += result.prompt_tokens
            cost.generation_tokens += sum(c.num_tokens for c in result.completions)
            lp = result.completions[0].logprobs if result.completions else None
            return lp.top(0) if lp is not None and lp.token_ids else None

        async def once(ids: tuple[int, ...]) -> Top | None:
            key = (source.request_id, ids)  # the same pass asked twice (equal prefixes) runs once
            if key not in passes:
                started[0] += 1
                passes[key] = asyncio.ensure_future(run(ids))
            return await asyncio.shield(passes[key])

        return once

    async def read(i: int) -> tuple[tuple[float, ...] | None, int]:
        sample, source, started = samples[i], written[i], [0]
        assert source.logprobs is not None
        preference = needs_preference(judge, aggregation)
        try:
            slots = [s for s in judge.slots(sample.text, n) if s.field != "preference" or preference]
        except ParseError:
            return None, 0
        if not slots:
            return None, 0
        next_top = next_top_of(source.request, started)
        reader = _Reader(source.logprobs, sample.text[source.offset :], next_top, sample_pass_bound(judge, n))
        outcomes = await asyncio.gather(
            *(reader.distribution(slot, source.offset) for slot in slots), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, PromptTooLongError):  # the sample fills the context: no pass fits after it
                return None, started[0]
            if isinstance(outcome, BaseException):
                raise outcome
        ready = [d for d in outcomes if isinstance(d, dict)]
        if len(ready) < len(slots):
            return None, started[0]
        return verdict_votes(slots, ready, judge, aggregation, n), started[0]

    # Equal completions (a greedy request's n: one output repeated) share one reading.
    firsts: dict[int, int] = {}
    for i, s in enumerate(samples):
        logprobs = written[i].logprobs
        if s.status is SampleStatus.PARSED and logprobs is not None:
            firsts.setdefault(id(logprobs), i)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = {i: tg.create_task(read(i)) for i in firsts.values()}
    finally:
        for task in passes.values():
            task.cancel()
    out = []
    for i, sample in enumerate(samples):
        if sample.status is not SampleStatus.PARSED:
            out.append(sample)
            continue
        logprobs = written[i].logprobs
        first = firsts.get(id(logprobs)) if logprobs is not None else None
        votes, started = tasks[first].result() if first is not None else (None, 0)
        started = started if first == i else 0
        if votes is None:
            out.append(dataclasses.replace(sample, status=SampleStatus.NO_SOFT_SCORE, kept=False, soft_passes=started))
            continue
        source: SoftSource = "guided" if continued[i] else "sampled"
        soft = unpermute_scores(votes, judged.permutation)
        out.append(dataclasses.replace(sample, soft_scores=soft, soft_source=source, soft_passes=started))
    return out, cost
