"""Engines behind the scoring pipeline: the protocol, the vLLM engine and a fake for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.engines.base import (
    ChatTemplateError,
    Completion,
    Engine,
    EngineDeadError,
    EngineError,
    EngineInfo,
    EngineNotReadyError,
    GenerationRequest,
    GenerationResult,
    PromptTooLongError,
    RenderedPrompt,
)

__all__ = [
    "ChatTemplateError",
    "Completion",
    "Engine",
    "EngineDeadError",
    "EngineError",
    "EngineInfo",
    "EngineNotReadyError",
    "GenerationRequest",
    "GenerationResult",
    "PromptTooLongError",
    "RenderedPrompt",
    "create_engine",
]


FAKE_ENGINE_ARGS = frozenset({"delay", "max_num_seqs", "max_model_len", "record_limit"})


def create_engine(
    kind: str,
    *,
    model: str = "embedded",
    cache_dir: Path | None = None,
    engine_kwargs: dict[str, Any] | None = None,
    adapter: Path | None = None,
) -> Engine:
    """Build an engine; vLLM is imported only when it is chosen.

    Args:
        kind: ``vllm`` or ``fake``.
        model: ``embedded``, a local folder or a cached hub name (vLLM only).
        cache_dir: where the embedded model is converted once (default ``~/.cache/grm-serve``).
        engine_kwargs: ``AsyncEngineArgs`` fields passed to vLLM unchanged; for the fake engine,
            :data:`FAKE_ENGINE_ARGS` (its delay, batch limit, context and record size).
        adapter: a peft LoRA adapter folder, merged onto the model once and cached (vLLM only;
            :func:`server.engines.adapters.merged_model`).

    Raises:
        server.engines.model_files.ModelNotFoundError: if the model cannot be found locally.
        server.engines.adapters.AdapterError: if ``adapter`` is not a peft adapter or does not fit the model.
        ValueError: for an unknown engine name.
    """
    if kind == "fake":
        from server.engines.fake import FakeEngine

        # Demos and soak/burst benchmarks shape the fake's load: --delay S --max-num-seqs N.
        kwargs = dict(engine_kwargs or {})
        unknown = sorted(set(kwargs) - FAKE_ENGINE_ARGS)
        if unknown:
            raise ValueError(
                f"unknown fake engine argument(s): {', '.join(unknown)}; known: {', '.join(sorted(FAKE_ENGINE_ARGS))}"
            )
        return FakeEngine(**kwargs)
    if kind == "vllm":
        from server.engines.model_files import EMBEDDED, EMBEDDED_MAX_MODEL_LEN, default_cache_dir, resolve_model
        from server.engines.vllm import VLLMEngine

        cache = cache_dir if cache_dir is not None else default_cache_dir()
        path, name = resolve_model(model, cache)
        if adapter is not None:
            from server.engines.adapters import merged_model

            path = str(merged_model(Path(path), adapter, cache)[0])
        kwargs = dict(engine_kwargs or {})
        if model == EMBEDDED:
            kwargs.setdefault("max_model_len", EMBEDDED_MAX_MODEL_LEN)
        return VLLMEngine(path, name, kwargs)
    raise ValueError(f"unknown engine {kind!r}")
