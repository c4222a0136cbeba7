"""What a request would send the engine, without generating: the engine requests of ``POST /v1/render``.

An item's requests are the scorer's own plan (:meth:`~server.pipeline.scoring.Scorer.plan`): the same
judged sets, response orders, prompts, sampling, seeds and format guidance as a ``/v1/score`` call of
that body, each rendered by the engine (:meth:`~server.engines.base.Engine.render`: the chat template
applied and the prompt tokenized, on vLLM). Nothing is admitted, queued or generated. What a live call
adds and a render cannot show: grouping across calls (other calls' rows in the same prompt), the
orders of an unseeded item (drawn afresh per call), adaptive k's rounds (the same requests, their
samples drawn in parts), and two-pass guidance's continuations (they depend on what was generated).

Every request of a plan repeats its item's whole conversation, so a render's answer can be many times
its body (one item of a 199k-character question and 64 responses: 64 requests of 199k characters
each). The answer's size is estimated from the items alone and refused past ``--max-render-bytes``
before any prompt is built (:func:`check_render_size`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from server.engines.base import GenerationRequest, RenderedPrompt
from server.pipeline.domain import Message
from server.pipeline.judges import Judge
from server.pipeline.sampling import group_orders
from server.pipeline.scoring import ScoreSpec
from server.serving.errors import APIError, to_api_error
from server.serving.state import AppState


@dataclass(frozen=True)
class RenderedRequest:
    """One engine request of an item's plan and the engine's rendering of its prompt."""

    responses: tuple[int, ...]  # caller indices of the responses this request judges
    order: tuple[int, ...]  # the same, in the order its prompt shows them
    request: GenerationRequest
    rendered: RenderedPrompt
    continue_cut: bool  # a sample the budget cuts is completed by a guided continuation


async def render_items(state: AppState, specs: Sequence[ScoreSpec]) -> list[list[RenderedRequest]]:
    """Every engine request each item would send, rendered by the engine.

    Raises:
        APIError: 413 when the answer's estimated size exceeds ``max_render_bytes``
            (:func:`check_render_size`, before any prompt is built); 503 while the engine is not up or
            draining; 500 when the model's chat template cannot render the judge's chat (the judge and
            the model do not match).
    """
    check_render_size(state.scorer.judge, state.scorer.max_group_size, specs, state.settings.max_render_bytes)
    if not state.ready.is_set() or state.engine is None:
        raise to_api_error(state.unavailable_error())
    engine = state.engine
    out = []
    for i, spec in enumerate(specs):
        plan = state.scorer.plan(spec, f"render-i{i}")
        try:
            rendered = await asyncio.gather(*(engine.render(p.request) for p in plan))
        except Exception as exc:
            raise to_api_error(exc) from None
        out.append(
            [
                RenderedRequest(
                    responses=p.members,
                    order=tuple(p.members[j] for j in p.permutation),
                    request=p.request,
                    rendered=r,
                    continue_cut=p.continue_cut,
                )
                for p, r in zip(plan, rendered, strict=True)
            ]
        )
    return out


def check_render_size(judge: Judge, max_group_size: int, specs: Sequence[ScoreSpec], limit: int) -> None:
    """Refuse a render whose answer would exceed ``limit`` bytes (:func:`render_estimate`), from the items
    alone: no prompt is built.

    Raises:
        APIError: 413 ``too_large`` naming the limit and its flag.
    """
    total, requests = render_estimate(judge, max_group_size, specs, stop_above=limit)
    if total > limit:
        raise APIError(
            413,
            "too_large",
            f"this render's answer is estimated at more than {total} bytes (its first {requests} engine requests, "
            "each repeating its item's conversation and responses), over the server limit max_render_bytes = "
            f"{limit} (--max-render-bytes); render fewer items, or fewer responses per item, in one call",
        )


def render_estimate(
    judge: Judge, max_group_size: int, specs: Sequence[ScoreSpec], *, stop_above: int | None = None
) -> tuple[int, int]:
    """The estimated bytes of a render's answer and the engine requests counted, from the items alone.

    Per engine request of each item's plan (its judged sets, each in its distinct orders, as
    :func:`~server.pipeline.sampling.group_orders` draws them): the UTF-8 bytes of the conversation (with
    principles and reference), of the set's responses and of the judge's own prompt text, once for each
    field of the answer that carries them: the prompt and the text the model reads, and a chat judge's
    messages as a third. JSON escapes and the answer's fixed fields are left out. Counting stops as soon
    as the total passes ``stop_above``.
    """
    total, requests, shape = 0, 0, _PromptShape(judge)
    for spec in specs:
        conversation = sum(_bytes(m.content) for m in spec.messages) + _bytes(spec.reference or "")
        conversation += sum(_bytes(p) for p in spec.principles or ())
        responses = [_bytes(r) for r in spec.responses]
        for group in group_orders(spec, judge, max_group_size):
            template, copies = shape.of(len(group.members))
            caller = conversation + sum(responses[i] for i in group.members)
            total += len(group.orders) * copies * (template + caller)
            requests += len(group.orders)
            if stop_above is not None and total > stop_above:
                return total, requests
    return total, requests


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class _PromptShape:
    """Per judged-set size: the bytes of the judge's own prompt text (rendered around empty caller text)
    and how many fields of a render's answer repeat a request's prompt (2, or 3 for a chat judge)."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.cache: dict[int, tuple[int, int]] = {}

    def of(self, shown: int) -> tuple[int, int]:
        if shown not in self.cache:
            try:
                prompt = self.judge.render([Message("user", "")], [""] * shown)
            except ValueError:  # a set size the judge refuses: the plan itself will say so
                self.cache[shown] = (0, 3)
            else:
                template = _bytes(prompt.user) + _bytes(prompt.system or "")
                self.cache[shown] = (template, 3 if prompt.messages is not None else 2)
        return self.cache[shown]
