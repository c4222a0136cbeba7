"""``POST /v1/render``: the exact engine requests a ``/v1/score`` body would send, without generating.

Same body as ``/v1/score`` (one item or a batch), validated the same way; the answer lists, per item,
every engine request of its plan: the prompt as the engine receives it (system turn, chat or raw text),
the text the model reads and its token count where the engine can render it, n, sampling and the
format guidance regex (:mod:`server.serving.rendering` says what a render cannot show). No admission,
no generation, no dedup; an answer estimated past ``--max-render-bytes`` is refused (413) before any
prompt is built.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from server.api.protocol import ScoreBatchRequest, ScoreBody, error_responses
from server.api.render_protocol import (
    RenderBatchResponse,
    RenderedItemOut,
    RenderedMessage,
    RenderedRequestOut,
    RenderResponse,
)
from server.serving.rendering import RenderedRequest, render_items
from server.serving.service import ScoringService

router = APIRouter(tags=["render"])


def _out(r: RenderedRequest) -> RenderedRequestOut:
    q = r.request
    messages = None if q.messages is None else [RenderedMessage(role=role, content=c) for role, c in q.messages]
    return RenderedRequestOut(
        responses=list(r.responses),
        order=list(r.order),
        n=q.n,
        system=q.system,
        prompt=q.prompt,
        messages=messages,
        raw=q.raw,
        text=r.rendered.text,
        prompt_tokens=r.rendered.prompt_tokens,
        temperature=q.temperature,
        top_p=q.top_p,
        max_tokens=q.max_tokens,
        seed=q.seed,
        guide_regex=q.guide_regex,
        continue_cut=r.continue_cut,
        logprobs=q.logprobs,
    )


_ERRORS = error_responses(400, 401, 413, 422, 500, 503)


@router.post("/v1/render", response_model=RenderResponse | RenderBatchResponse, responses=_ERRORS)
async def render(body: ScoreBody, request: Request) -> RenderResponse | RenderBatchResponse:
    """What the judge would see: every engine request a ``/v1/score`` call of this body would send."""
    app = request.app.state
    service: ScoringService = app.service
    items = body.items if isinstance(body, ScoreBatchRequest) else [body]
    app.validator.check_items(len(items))
    specs = [app.validator.resolve(item.to_item()) for item in items]
    rendered = await render_items(app.grm, specs)
    outputs = [
        RenderedItemOut(template=service.template_of(spec), requests=[_out(r) for r in requests])
        for spec, requests in zip(specs, rendered, strict=True)
    ]
    exact = all(r.rendered.exact for requests in rendered for r in requests)
    counts = "tokenizer" if exact else "approximate"
    head = {"model": service.model_name, "judge": app.grm.judge.name, "token_counts": counts}
    if isinstance(body, ScoreBatchRequest):
        return RenderBatchResponse(**head, items=outputs)
    return RenderResponse(**head, **outputs[0].model_dump())
