"""A real, scriptable engine for tests: same async semantics as vLLM, no model.

It fails its health check until :meth:`FakeEngine.start` has run, honours cancellation (the request
disappears from :attr:`running`), and produces text from a script: a callable that sees the request
and returns one text per sample (or a whole :class:`Completion`, to script a finish reason such as a
cut at the budget, ``"length"``). The default script writes a well-formed GRM answer that scores each
shown response by its length, so tests can predict the vote.

A request that asks for ``logprobs`` gets them from a deterministic logprob model over the fake's own
tokens (:mod:`server.engines.fake_tokens`), consistent with the text written; a request that continues
from ``answer_token_ids`` (a soft vote's scoring pass) is answered by that model alone: one token.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import SupportsIndex, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from server.engines.base import (
    Completion,
    EngineDeadError,
    EngineInfo,
    EngineNotReadyError,
    GenerationRequest,
    GenerationResult,
    PromptTooLongError,
    RenderedPrompt,
    TokenLogprobs,
)
from server.engines.fake_tokens import FakeVocabulary, LogprobModel, graded, tokenize

Script = Callable[[GenerationRequest], Sequence[str | Completion]]

T = TypeVar("T")

DEFAULT_RECORD_LIMIT = 1024


class BoundedList(list[T]):
    """A list that keeps only its newest ``limit`` items: appending past the limit drops the oldest.

    Everything else is a plain list (``== []``, indexing, slicing, iteration), so tests read the
    record as before, while a long-running ``grm-serve --engine fake`` holds at most ``limit`` items.
    """

    def __init__(self, limit: int, items: Iterable[T] = ()) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        super().__init__()
        self.limit = limit
        self.extend(items)

    def _trim(self) -> None:
        if len(self) > self.limit:
            del self[: len(self) - self.limit]

    def append(self, item: T) -> None:
        super().append(item)
        self._trim()

    def extend(self, items: Iterable[T]) -> None:
        super().extend(items)
        self._trim()

    def insert(self, index: SupportsIndex, item: T) -> None:
        super().insert(index, item)
        self._trim()

    def __iadd__(self, items: Iterable[T]) -> BoundedList[T]:  # type: ignore[override,misc]
        self.extend(items)
        return self


_BLOCK = re.compile(r"\[The Begin of Response (\d+)\]\n(.*?)\n\[The End of Response \1\]", re.S)


def shown_responses(prompt: str) -> list[str]:
    """The responses of a rendered GRM prompt, in the order shown."""
    return [m.group(2) for m in _BLOCK.finditer(prompt)]


def length_script(request: GenerationRequest) -> list[str]:
    """Score each shown response min(10, 1 + len // 10): longer responses win, deterministically."""
    scores = [min(10, 1 + len(r) // 10) for r in shown_responses(request.prompt)]
    text = (
        "Specific Criteria: Length (100%).\n"
        "Analysis: Longer is better here.\n"
        f"Scores: \\boxed{{{', '.join(map(str, scores))}}}"
    )
    return [text] * request.n


CUT_CRITERIA = "Specific Criteria: a criteria line too long for the budget"


def budget_cut_script(request: GenerationRequest) -> Sequence[str | Completion]:
    """A judge whose first pass always runs out of budget inside its criteria line (100 tokens,
    ``"length"``); a continuation (a request with an ``assistant_prefix``) closes the line and
    scores like :func:`length_script` (12 tokens)."""
    if not request.assistant_prefix:
        return [Completion(CUT_CRITERIA, "length", 100)] * request.n
    scores = [min(10, 1 + len(r) // 10) for r in shown_responses(request.prompt)]
    return [Completion(f" end\nAnalysis: ok\nScores: \\boxed{{{', '.join(map(str, scores))}}}", "stop", 12)] * request.n


class FakeEngine:
    """Scripted engine implementing :class:`server.engines.base.Engine`.

    Args:
        script: returns the ``n`` sample texts of a request (default :func:`length_script`).
        delay: seconds each generate call waits before answering (a cancellation point).
        fail_with: an exception raised by every generate call, for error-path tests.
        max_model_len: prompts longer than this many characters raise ``PromptTooLongError``.
        record_limit: how many of the newest requests (and aborted request ids) :attr:`requests`
            (and :attr:`aborted`) keep, so a long-running fake server does not grow without bound;
            :attr:`requests_total` and :attr:`aborted_total` count them all.
        max_num_seqs: a batch limit like vLLM's: at most this many sequences (a request counts its
            ``n``) generate at once, each request taking ``delay`` once it runs; the others wait, in
            about arrival order. So latency is flat until the batch is full, then grows linearly with the
            load, and throughput is ``max_num_seqs / delay`` samples per second (None: no limit).
        logprob_model: the top logprobs of requests that ask for them (default
            :func:`~server.engines.fake_tokens.graded`; :func:`~server.engines.fake_tokens.certain` for a
            judge sure of every token).
    """

    def __init__(
        self,
        script: Script = length_script,
        *,
        delay: float = 0.0,
        fail_with: BaseException | None = None,
        max_model_len: int | None = None,
        record_limit: int = DEFAULT_RECORD_LIMIT,
        max_num_seqs: int | None = None,
        logprob_model: LogprobModel = graded,
    ) -> None:
        self.script = script
        self.logprob_model = logprob_model
        self.vocabulary = FakeVocabulary()
        self.delay = delay
        self.fail_with = fail_with
        self.max_model_len = max_model_len
        self.started = False
        self.dead = False
        self.record_limit = record_limit
        self.requests: BoundedList[GenerationRequest] = BoundedList(record_limit)
        self.requests_total = 0
        self.running: set[str] = set()
        self.aborted: BoundedList[str] = BoundedList(record_limit)
        self.aborted_total = 0
        self.max_num_seqs = max_num_seqs
        self.seqs_running = 0
        self.peak_seqs_running = 0
        self._scheduled = asyncio.Condition()

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("fake", "0", "fake-grm", self.max_model_len, self.max_num_seqs)

    async def start(self) -> None:
        self.started = True

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        await self.check_health()
        if self.max_model_len is not None and len(request.prompt) > self.max_model_len:
            raise PromptTooLongError(
                f"prompt of {len(request.prompt)} tokens exceeds the context of {self.max_model_len}"
            )
        if request.request_id in self.running:  # as vLLM's engine refuses a request id it is running
            raise ValueError(f"Request id {request.request_id} already running.")
        self.requests.append(request)
        self.requests_total += 1
        self.running.add(request.request_id)
        try:
            async with self._batch_slot(request.n):
                if self.delay:
                    await asyncio.sleep(self.delay)
            if self.fail_with is not None:
                raise self.fail_with
            texts = [self._scoring_pass(request)] if request.answer_token_ids else self.script(request)
        except asyncio.CancelledError:
            self._record_abort(request.request_id)
            raise
        finally:
            self.running.discard(request.request_id)
        completions = [t if isinstance(t, Completion) else Completion(t, "stop", len(t.split())) for t in texts]
        if request.logprobs is not None and not request.answer_token_ids:
            before = tokenize(request.assistant_prefix)
            previous = before[-1] if before else ""
            completions = [
                dataclasses.replace(
                    c, logprobs=self.vocabulary.logprobs(c.text, self.logprob_model, request.logprobs, previous)
                )
                for c in completions
            ]
        prompt_tokens = len(request.prompt.split()) + len(request.answer_token_ids)
        return GenerationResult(request.request_id, completions, prompt_tokens)

    def _scoring_pass(self, request: GenerationRequest) -> Completion:
        """One token after ``answer_token_ids``: the logprob model's likeliest, with its top logprobs."""
        previous = self.vocabulary.texts[request.answer_token_ids[-1]]
        token, top = self.vocabulary.next_token(previous, self.logprob_model, request.logprobs or 1)
        ids = (self.vocabulary.id_of(token),)
        return Completion(token, "length", 1, TokenLogprobs(ids, lambda p: top, self.vocabulary.decode))

    @contextlib.asynccontextmanager
    async def _batch_slot(self, n: int) -> AsyncIterator[None]:
        """Room for ``n`` sequences in the batch (at once without ``max_num_seqs``), in about arrival order."""
        limit = self.max_num_seqs
        if limit is not None:
            async with self._scheduled:
                await self._scheduled.wait_for(lambda: not self.seqs_running or self.seqs_running + n <= limit)
        self.seqs_running += n
        self.peak_seqs_running = max(self.peak_seqs_running, self.seqs_running)
        try:
            yield
        finally:
            self.seqs_running -= n
            if limit is not None:
                async with self._scheduled:
                    self._scheduled.notify_all()

    async def render(self, request: GenerationRequest) -> RenderedPrompt:
        """No chat template here: a raw request's text as is, else no text; tokens are the fake's own
        count (whitespace-separated words of ``prompt``, what it reports in usage), not a tokenizer's."""
        await self.check_health()
        return RenderedPrompt(request.prompt if request.raw else None, len(request.prompt.split()), exact=False)

    async def abort(self, request_id: str) -> None:
        self._record_abort(request_id)

    def _record_abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        self.aborted_total += 1

    async def check_health(self) -> None:
        if self.dead:
            raise EngineDeadError("fake engine marked dead")
        if not self.started:
            raise EngineNotReadyError("fake engine not started")

    def metric_families(self) -> Iterable[Metric]:
        """Two families in vLLM's style, so tests see engine metrics next to grm-serve's own."""
        if not self.started:
            return []
        running = GaugeMetricFamily("fake_engine:num_requests_running", "Requests generating now.")
        running.add_metric([], len(self.running))
        total = CounterMetricFamily("fake_engine:requests", "Generate calls received.")
        total.add_metric([], self.requests_total)
        return [running, total]

    async def shutdown(self) -> None:
        self.started = False
