"""Response models of ``POST /v1/render`` (its body is ``/v1/score``'s: :data:`server.api.protocol.ScoreBody`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RenderedMessage(BaseModel):
    role: str = Field(description="The judge's role for this turn (custom roles included, e.g. response_1).")
    content: str


class RenderedRequestOut(BaseModel):
    """One engine request, as the pipeline would send it (request ids aside)."""

    responses: list[int] = Field(description="Request indices of the responses this engine request judges.")
    order: list[int] = Field(description="The same, in the order the prompt shows them.")
    n: int = Field(description="Samples the request asks for (equal orders share one request).")
    system: str | None = Field(description="The system turn, when the judge sends one.")
    prompt: str = Field(
        description="The user turn (raw: the whole text the model reads; with messages: the chat as text, for logs)."
    )
    messages: list[RenderedMessage] | None = Field(description="The whole chat, for judges that send one.")
    raw: bool = Field(description="Sent as text, without the model's chat template.")
    text: str | None = Field(
        description="The text the model reads: the chat template applied with its generation prompt (vLLM); "
        "null when the engine cannot render it (the fake engine, for a chat)."
    )
    prompt_tokens: int | None = Field(description="Tokens of that text (see token_counts).")
    temperature: float
    top_p: float
    max_tokens: int = Field(description="The generation budget (with two-pass guidance: the first pass's).")
    seed: int | None = Field(description="The request's sampling seed (items with a seed only).")
    guide_regex: str | None = Field(description="The format guidance every sample is held to (structured outputs).")
    continue_cut: bool = Field(
        description="A sample the budget cuts before its verdict is completed by a short guided continuation."
    )
    logprobs: int | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="votes: soft only: the top logprobs asked per generated position (soft votes read them; a "
        "sample may then add one-token scoring passes, not rendered here). Absent for hard votes.",
    )


class RenderedItemOut(BaseModel):
    template: str = Field(description="The versioned judge prompt (its rubric and reference slots filled or not).")
    requests: list[RenderedRequestOut] = Field(
        description="Every engine request of the item (empty for a pairwise judge's lone response: unpaired)."
    )


class _RenderedAnswer(BaseModel):
    model: str
    judge: str
    token_counts: str = Field(
        description="tokenizer: prompt_tokens are the model tokenizer's; approximate: the engine's own count "
        "(the fake engine: whitespace-separated words)."
    )


class RenderResponse(RenderedItemOut, _RenderedAnswer):
    pass


class RenderBatchResponse(_RenderedAnswer):
    items: list[RenderedItemOut]
