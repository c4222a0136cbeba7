"""Engines behind the scoring pipeline: the protocol, the vLLM engine and a fake for tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.engines.base import (
    Completion,
    Engine,
    EngineDeadError,
    EngineError,
    EngineInfo,
    EngineNotReadyError,
    GenerationRequest,
    GenerationResult,
    PromptTooLongError,
)

if TYPE_CHECKING:
    from server.config import Settings

__all__ = [
    "Completion",
    "Engine",
    "EngineDeadError",
    "EngineError",
    "EngineInfo",
    "EngineNotReadyError",
    "GenerationRequest",
    "GenerationResult",
    "PromptTooLongError",
    "create_engine",
]


def create_engine(settings: Settings) -> Engine:
    """Build the engine the settings name; vLLM is imported only when it is chosen.

    Raises:
        server.models.ModelNotFoundError: if the model cannot be found locally.
        ValueError: for an unknown engine name.
    """
    if settings.engine == "fake":
        from server.engines.fake import FakeEngine

        return FakeEngine()
    if settings.engine == "vllm":
        from server.engines.vllm import VLLMEngine
        from server.models import resolve_model

        path, name = resolve_model(settings.model, settings.cache_dir)
        return VLLMEngine(path, name, settings.engine_kwargs())
    raise ValueError(f"unknown engine {settings.engine!r}")
