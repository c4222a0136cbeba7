"""The Engine protocol: what the scoring pipeline needs from a text generator.

The HTTP layer and the pipeline only see this interface; the vLLM engine (``engines/vllm.py``) and
the fake engine for tests (``engines/fake.py``) implement it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prometheus_client.core import Metric


class EngineError(RuntimeError):
    """Base class of engine failures."""


class EngineNotReadyError(EngineError):
    """The engine has not started yet, or is shutting down."""


class EngineDeadError(EngineError):
    """The engine failed and cannot serve any more requests; the process should restart."""


class PromptTooLongError(EngineError):
    """A prompt plus its generation budget does not fit the model's context."""


class ChatTemplateError(EngineError):
    """The model's chat template cannot render a request's chat: it refuses a judge's custom role
    (``response_1``, ``principle``) or drops that turn. The judge profile and the model do not match."""


@dataclass(frozen=True)
class GenerationRequest:
    """k samples for one prompt.

    The prompt takes one of three shapes, as the judge asks (:mod:`server.pipeline.judges`):

    * ``prompt`` alone: the text of one user turn, rendered with the model's chat template;
    * ``system`` too: a system turn before it, rendered the same way;
    * ``messages``: a whole chat (roles may be the model's own, e.g. Nemotron GenRM's ``response_1``),
      rendered with the model's chat template; ``prompt`` then holds the chat's text for logs;
    * ``raw``: ``prompt`` is the whole text the model reads, already in its own format (tokenized as
      is, with the tokenizer's special tokens; no chat template).

    ``assistant_prefix`` is text the answer already starts with: the engine appends its tokens after
    the generation prompt and generates what follows (a continuation of a sample). ``answer_token_ids``
    are token ids the answer continues with after that, as the engine's tokenizer numbers them (a soft
    vote's scoring pass re-reads a sample's own tokens, :mod:`server.pipeline.soft_votes`).

    ``logprobs``: return, at every generated position, the engine's top ``logprobs`` token logprobs
    (:class:`TokenLogprobs`); None (the default) returns none.
    """

    request_id: str
    prompt: str
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None = None
    guide_regex: str | None = None
    assistant_prefix: str = ""
    tenant: str = ""  # whose work this is: the server's work gate serves tenants fairly; engines ignore it
    system: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # (role, content) of a whole chat
    raw: bool = False
    repetition_penalty: float = 1.0  # vLLM's; 1 is none (the judge's own, e.g. Prometheus 2's 1.03)
    logprobs: int | None = None  # top logprobs per generated position (soft votes); None: none
    answer_token_ids: tuple[int, ...] = ()  # token ids the answer continues with after assistant_prefix

    def chat(self) -> list[dict[str, str]]:
        """The chat the model's template renders (not for ``raw`` requests)."""
        if self.messages is not None:
            return [{"role": role, "content": content} for role, content in self.messages]
        turns = [{"role": "system", "content": self.system}] if self.system is not None else []
        return [*turns, {"role": "user", "content": self.prompt}]


@dataclass(frozen=True, eq=False)
class TokenLogprobs:
    """The tokens one completion wrote and the engine's top logprobs at each of them.

    The logprobs are the model's own distribution over the next token (vLLM's default
    ``logprobs_mode="raw_logprobs"``): before temperature, top-p, penalties and the structured-output
    mask. ``top(p)`` maps token ids to logprobs at position ``p`` (the written token always among them);
    ``decode(ids)`` is the engine's text of a token sequence (its tokenizer's), so that a reader can tell
    which characters of the completion's text each token wrote and what an alternative token would have
    written there. Read lazily: a completion of a thousand tokens is converted only where it is read.
    """

    token_ids: tuple[int, ...]
    top: Callable[[int], dict[int, float]]
    decode: Callable[[Sequence[int]], str]


@dataclass(frozen=True)
class Completion:
    """One generated sample; ``logprobs`` when its request asked for them (``GenerationRequest.logprobs``)."""

    text: str
    finish_reason: str | None
    num_tokens: int
    logprobs: TokenLogprobs | None = None


@dataclass(frozen=True)
class GenerationResult:
    """The ``n`` completions of one request."""

    request_id: str
    completions: list[Completion]
    prompt_tokens: int


@dataclass(frozen=True)
class RenderedPrompt:
    """What an engine makes of a request's prompt without generating (``POST /v1/render``).

    ``text`` is the whole text the model reads (the chat template applied, with its generation prompt),
    or None when the engine cannot say (the fake engine has no chat template); ``prompt_tokens`` counts
    its tokens, ``exact`` says whether that count is the model tokenizer's (else the engine's own
    approximation, the one it reports in usage).
    """

    text: str | None
    prompt_tokens: int | None
    exact: bool


@dataclass(frozen=True)
class EngineInfo:
    """What ``/v1/info`` says about the engine."""

    name: str  # "vllm" | "fake"
    version: str
    model: str
    max_model_len: int | None
    max_num_seqs: int | None = None  # sequences the engine batches at once (vLLM's max_num_seqs), if it has a limit


@runtime_checkable
class Engine(Protocol):
    """A text generator the scoring pipeline can drive."""

    @property
    def info(self) -> EngineInfo: ...

    async def start(self) -> None:
        """Load the model; after it returns, :meth:`check_health` passes."""

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Generate ``request.n`` samples.

        Cancelling the awaiting task aborts the request in the engine.

        Raises:
            EngineNotReadyError: before :meth:`start` or after :meth:`shutdown`.
            EngineDeadError: if the engine failed.
            PromptTooLongError: if the prompt does not fit the context.
        """

    async def render(self, request: GenerationRequest) -> RenderedPrompt:
        """The prompt ``request`` would send, as the engine renders and tokenizes it, without generating.

        Raises:
            EngineNotReadyError: before :meth:`start` or after :meth:`shutdown`.
            ChatTemplateError: the model's chat template cannot render the request's chat.
        """

    async def abort(self, request_id: str) -> None:
        """Stop generating for ``request_id``; a no-op for unknown ids."""

    async def check_health(self) -> None:
        """Return if the engine can serve.

        Raises:
            EngineNotReadyError: not started yet.
            EngineDeadError: the engine failed.
        """

    def metric_families(self) -> Iterable[Metric]:
        """The engine's own Prometheus metric families now (served on ``/metrics``); empty when none."""

    async def shutdown(self) -> None:
        """Free the engine; safe to call twice."""
