"""What a request would send the engine, without generating: the engine requests of ``POST /v1/render``.

An item's requests are the scorer's own plan (:meth:`~server.pipeline.scoring.Scorer.plan`): the same
judged sets, response orders, prompts, sampling, seeds and format guidance as a ``/v1/score`` call of
that body, each rendered by the engine (:meth:`~server.engines.base.Engine.render`: the chat template
applied and the prompt tokenized, on vLLM). Nothing is admitted, queued or generated. What a live call
adds and a render cannot show: grouping across calls (other calls' rows in the same prompt), the
orders of an unseeded item (drawn afresh per call), adaptive k's rounds (the same requests, their
samples drawn in parts), and two-pass guidance's continuations (they depend on what was generated).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from server.engines.base import GenerationRequest, RenderedPrompt
from server.pipeline.scoring import ScoreSpec
from server.serving.errors import to_api_error
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
        APIError: 503 while the engine is not up or draining; 500 when the model's chat template cannot
            render the judge's chat (the judge and the model do not match).
    """
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
