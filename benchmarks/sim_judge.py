"""Simulated judges for ``benchmarks/adaptive.py`` (labelled simulations, not a model).

Both are engines in grm-serve's own sense (``GenerationRequest -> GenerationResult``): sample ``i`` of a
request seeded ``s`` is seeded ``s + i``, as vLLM seeds its children, so adaptive rounds draw the very
samples full k would. A response's text carries its quality (``"... quality=6.5"``).

* :func:`rounded_judge` (hard votes only): each vote is ``round(quality + N(0, sd))`` clamped to 1..10.
* :func:`distribution_judge` (hard and soft votes): per sample and response the judge forms an opinion
  ``mu = quality + N(0, sd_between)`` and writes a value drawn from its own distribution over 1..10, a
  normal around ``mu`` of sd ``soft_sd`` discretised to the scale. It returns top logprobs as vLLM does
  (one token per character here, so ``"10"`` is ``"1"`` then ``"0"`` as on SmolLM2 and Gemma, and the
  pipeline's scoring passes for it are answered too): the soft vote the pipeline reads is that
  distribution's mean, the hard vote the value drawn. ``soft_sd`` is the per-vote spread between the two
  that ``benchmarks/soft_votes_grpo.py`` measures on a real judge (rms of soft minus hard);
  ``sd_between = sqrt(sd**2 - soft_sd**2)`` keeps a hard vote's total spread at ``sd``, so hard votes
  are as noisy as the rounded judge's and soft votes shed exactly the part the judge itself knew.
"""

from __future__ import annotations

import math
import random
import re

from server.engines.base import Completion, GenerationRequest, GenerationResult, TokenLogprobs
from server.engines.fake import shown_responses

SCALE = range(1, 11)
_SEED = re.compile(r"seed (\d+)\.")


def _seed(request: GenerationRequest, i: int) -> int:
    return (request.seed if request.seed is not None else random.getrandbits(31)) + i


def _quality(response: str) -> float:
    return float(response.split("quality=")[1])


def _text(seed: int, votes: list[int]) -> str:
    scores = ", ".join(map(str, votes))
    return f"Specific Criteria: simulated.\nAnalysis: seed {seed}.\nScores: \\boxed{{{scores}}}"


def rounded_judge(sd: float):
    """Votes ``round(quality + N(0, sd))`` clamped to 1..10 (hard votes only: no logprobs)."""

    async def generate(request: GenerationRequest) -> GenerationResult:
        texts = []
        for i in range(request.n):
            seed = _seed(request, i)
            votes = []
            for r in shown_responses(request.prompt):
                noise = random.Random(f"{seed}|{r}").gauss(0.0, sd)
                votes.append(min(10, max(1, round(_quality(r) + noise))))
            texts.append(_text(seed, votes))
        return GenerationResult(request.request_id, [Completion(t, "stop", 100) for t in texts], 500)

    return generate


def _decode(ids) -> str:
    return "".join(map(chr, ids))


class _Opinion:
    """What the judge thinks of one shown response in one sample: its distribution and the value drawn."""

    def __init__(self, seed: int, response: str, sd: float, soft_sd: float) -> None:
        rng = random.Random(f"{seed}|{response}")
        mu = _quality(response) + rng.gauss(0.0, math.sqrt(max(sd * sd - soft_sd * soft_sd, 0.0)))
        weights = [math.exp(-((v - mu) ** 2) / (2 * soft_sd * soft_sd)) for v in SCALE]
        total = sum(weights)
        self.p = {v: w / total for v, w in zip(SCALE, weights, strict=True)}
        self.value = rng.choices(list(SCALE), weights=weights)[0]

    def first_digit(self) -> dict[int, float]:
        """Logprobs of the value's first token: ``"1"`` stands for 1 and for the start of 10."""
        p = {str(v): q for v, q in self.p.items() if v < 10}
        p["1"] += self.p[10]
        return {ord(d): math.log(q) for d, q in p.items() if q > 0}

    def after_one(self, end: str) -> dict[int, float]:
        """Logprobs after a written ``"1"``: ``"0"`` (it was 10) or the slot's end (it was 1)."""
        one_or_ten = self.p[1] + self.p[10]
        p = {"0": self.p[10] / one_or_ten, end: self.p[1] / one_or_ten}
        return {ord(t): math.log(q) for t, q in p.items() if q > 0}


def distribution_judge(sd: float, soft_sd: float):
    """The judge of the module docstring: hard votes drawn from its distribution, soft votes its mean."""

    def opinions(request: GenerationRequest, seed: int) -> list[_Opinion]:
        return [_Opinion(seed, r, sd, soft_sd) for r in shown_responses(request.prompt)]

    def completion(request: GenerationRequest, seed: int) -> Completion:
        ops = opinions(request, seed)
        text = _text(seed, [o.value for o in ops])
        ids = tuple(map(ord, text))
        tops: dict[int, dict[int, float]] = {}
        at = text.index("{") + 1
        for slot, o in enumerate(ops):
            tops[at] = o.first_digit()
            end = "," if slot + 1 < len(ops) else "}"
            if o.value in (1, 10):
                tops[at + 1] = o.after_one(end)
            at = at + len(str(o.value)) + 2  # the value, then ", "

        def top(p: int) -> dict[int, float]:
            return tops.get(p, {ids[p]: 0.0})  # sure of every other character

        return Completion(text, "stop", len(ids), TokenLogprobs(ids, top, _decode))

    def scoring_pass(request: GenerationRequest) -> Completion:
        """One token after the sample's text up to a slot and a ``"1"``: is it 10 or 1?"""
        written = _decode(request.answer_token_ids)
        seed = int(_SEED.search(written).group(1))
        slot = written[written.index("{") :].count(",")
        ops = opinions(request, seed)
        top = ops[slot].after_one("," if slot + 1 < len(ops) else "}")
        best = max(top, key=top.__getitem__)
        return Completion(chr(best), "length", 1, TokenLogprobs((best,), lambda p: top, _decode))

    async def generate(request: GenerationRequest) -> GenerationResult:
        if request.answer_token_ids:
            return GenerationResult(request.request_id, [scoring_pass(request)], 500)
        completions = [completion(request, _seed(request, i)) for i in range(request.n)]
        if request.logprobs is None:  # hard votes: the same samples, no logprobs asked
            completions = [Completion(c.text, c.finish_reason, c.num_tokens) for c in completions]
        return GenerationResult(request.request_id, completions, 500)

    return generate
