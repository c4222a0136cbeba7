"""Server settings: environment (prefix ``GRM_``) and CLI flags, validated at startup."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.models import EMBEDDED, default_cache_dir
from server.prompts import DEFAULT_TEMPLATE, TEMPLATES


class Settings(BaseSettings):
    """Everything the server is configured with.

    Every field can be set by an environment variable ``GRM_<FIELD>`` (``GRM_PORT=9000``) or by the
    matching ``grm-serve --field-name`` flag. Request-level knobs (``k``, ``temperature``,
    ``max_tokens``) have a default and a maximum; a request may choose any value up to the maximum.
    """

    model_config = SettingsConfigDict(env_prefix="GRM_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"

    # Engine and model
    engine: Literal["vllm", "fake"] = "vllm"
    model: str = EMBEDDED
    cache_dir: Path = Field(default_factory=default_cache_dir)
    max_model_len: int | None = Field(None, ge=256)
    dtype: str | None = None
    tensor_parallel_size: int | None = Field(None, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    extra_engine_args: dict[str, Any] = Field(default_factory=dict)

    # GRM sampling
    template: str = DEFAULT_TEMPLATE
    format_guidance: bool = True
    k: int = Field(8, ge=1)
    max_k: int = Field(32, ge=1)
    temperature: float = Field(0.5, ge=0)
    max_temperature: float = Field(2.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=64)
    max_tokens_limit: int = Field(4096, ge=64)
    max_group_size: int = Field(4, ge=1)

    # Meta RM (guided voting)
    meta_rm: str = "auto"
    k_meta: int | None = Field(None, ge=1)
    meta_rm_device: str | None = None

    # OpenRLHF compatibility (/get_reward)
    openrlhf_reward: Literal["unit", "mean", "raw"] = "unit"

    # Request limits
    max_responses_per_item: int = Field(64, ge=1)
    max_items_per_batch: int = Field(256, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(600.0, gt=0)
    drain_timeout_s: int = Field(120, ge=0)
    max_concurrent_requests: int = Field(64, ge=1)
    max_queue_wait_s: float = Field(30.0, ge=0)
    max_response_chars: int = Field(100_000, ge=1)
    max_conversation_chars: int = Field(200_000, ge=1)

    # Auth: keys from GRM_API_KEYS (comma-separated) and/or a file with one key per line
    api_keys: str | None = Field(None, repr=False)
    api_key_file: Path | None = None
    metrics_public: bool = True  # /metrics stays open to scrapers unless set false

    # Duplicate requests (client retries), see server/dedup.py
    dedup_identical_requests: bool = True
    idempotency_ttl_s: float = Field(300.0, ge=0)
    idempotency_cache_size: int = Field(1024, ge=0)
    idempotency_linger_s: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.template not in TEMPLATES:
            raise ValueError(f"unknown template {self.template!r}; known: {', '.join(sorted(TEMPLATES))}")
        if self.k > self.max_k:
            raise ValueError(f"k={self.k} exceeds max_k={self.max_k}")
        if self.temperature > self.max_temperature:
            raise ValueError(f"temperature={self.temperature} exceeds max_temperature={self.max_temperature}")
        if self.k_meta is not None and self.k_meta > self.k:
            raise ValueError(f"k_meta={self.k_meta} exceeds k={self.k}")
        if self.max_tokens > self.max_tokens_limit:
            raise ValueError(f"max_tokens={self.max_tokens} exceeds max_tokens_limit={self.max_tokens_limit}")
        return self

    def resolved_api_keys(self) -> frozenset[str]:
        """Every configured API key; empty means auth is off.

        Raises:
            ValueError: if ``api_key_file`` cannot be read.
        """
        keys = {k.strip() for k in (self.api_keys or "").split(",")}
        if self.api_key_file is not None:
            try:
                lines = self.api_key_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ValueError(f"cannot read api_key_file: {exc.strerror}") from None
            keys.update(line.strip() for line in lines if not line.startswith("#"))
        return frozenset(k for k in keys if k)

    def meta_rm_spec(self) -> str | None:
        """The meta RM to load, or None for plain voting.

        ``auto`` means the embedded meta RM when the GRM is the embedded model (it was trained on that
        model's samples) and none otherwise: a meta RM only helps the GRM it was trained for.
        """
        if self.meta_rm == "none":
            return None
        if self.meta_rm == "auto":
            return "embedded" if self.model == EMBEDDED and self.engine == "vllm" else None
        return self.meta_rm

    def engine_kwargs(self) -> dict[str, Any]:
        """``AsyncEngineArgs`` fields: the named ones that are set, then ``extra_engine_args``."""
        named = {
            "max_model_len": self.max_model_len,
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
        }
        return {**{k: v for k, v in named.items() if v is not None}, **self.extra_engine_args}
