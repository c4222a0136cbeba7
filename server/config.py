"""Server settings: environment (prefix ``GRM_``) and CLI flags, validated at startup."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.engines.model_files import EMBEDDED, default_cache_dir
from server.pipeline.adaptive import DEFAULT_DELTA
from server.pipeline.judges import (
    DEFAULT_JUDGE,
    JUDGES,
    DeepSeekGRM,
    Judge,
    get_judge,
    read_judge_file,
    soft_votes_problem,
    unsupported_aggregation,
    vote_scale,
)
from server.pipeline.prompts import DEFAULT_TEMPLATE, TEMPLATES, get_template

# The stderr rule's default: 0.5 on deepseek-grm's 1..10 votes (a spread of 9), where it was tuned, and
# the same share of any other judge's vote scale (Settings.stderr_epsilon).
DEFAULT_EPSILON, DEFAULT_EPSILON_SPREAD = 0.5, 9.0


class Settings(BaseSettings):
    """Everything the server is configured with.

    Every field can be set by an environment variable ``GRM_<FIELD>`` (``GRM_PORT=9000``) or by the
    matching ``grm-serve --field-name`` flag. Request-level knobs (``k``, ``temperature``,
    ``max_tokens``) have a default and a maximum; a request may choose any value up to the maximum.
    """

    model_config = SettingsConfigDict(env_prefix="GRM_", extra="forbid")

    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["json", "text"] = Field("json", description="json (one object per line) or text")

    # Engine and model
    engine: Literal["vllm", "fake"] = Field("vllm", description="vllm, or fake (scripted, for demos and tests)")
    model: str = Field(
        EMBEDDED, description="'embedded' (bundled SmolLM2-135M-Instruct), a local HF folder or a cached hub name"
    )
    cache_dir: Path = Field(default_factory=default_cache_dir, description="where the embedded model is converted once")
    adapter: Path | None = Field(
        None,
        description="a peft LoRA adapter folder (grm-train rft's DIR/adapter): merged onto --model once, cached in "
        "--cache-dir, served as a plain model; --meta-rm auto then uses no meta RM",
    )
    max_model_len: int | None = Field(None, ge=256, description="vLLM: context length (unset: the model's own)")
    dtype: str | None = Field(None, description="vLLM: weight dtype (auto, bfloat16, float16, float32)")
    tensor_parallel_size: int | None = Field(None, ge=1, description="vLLM: GPUs per replica")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="vLLM: share of GPU memory to use")
    extra_engine_args: dict[str, Any] = Field(
        default_factory=dict, description="more AsyncEngineArgs fields (on the command line: any unknown --flag)"
    )

    # The judge and its sampling (server/pipeline/judges, docs/judges.md)
    judge: str = Field(DEFAULT_JUDGE, description=f"judge profile: {', '.join(sorted(JUDGES))}")
    judge_file: Path | None = Field(
        None,
        description="a judge profile file (YAML or JSON: mode, template, verdict rule, scale) to serve an "
        "in-house judge without code, instead of --judge (docs/judges.md)",
    )
    pairing: Literal["circular", "all_pairs"] = Field(
        "circular", description="pairwise judges: which pairs of a pool are judged (circular: each with the next)"
    )
    aggregation: Literal["mean", "win_rate", "tiebreaker"] = Field(
        "mean",
        description="pairwise judges: a response's vote from a verdict: the judge's own scores (mean), 1/0 by "
        "who won (win_rate), or NeMo Gym's tie-breaker on graded preferences (tiebreaker)",
    )
    template: str = Field(DEFAULT_TEMPLATE, description="DeepSeek-GRM prompt template")
    format_guidance: bool = Field(True, description="force the three-line output format (structured outputs)")
    k: int = Field(8, ge=1, description="default samples per request")
    max_k: int = Field(32, ge=1, description="largest k a request may ask for")
    temperature: float = Field(
        0.5, ge=0, description="sampling temperature (unset: the judge's own; deepseek-grm: 0.5)"
    )
    max_temperature: float = Field(2.0, ge=0, description="largest temperature a request may ask for")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling (unset: the judge's own; deepseek-grm: 1)")
    max_tokens: int = Field(
        1024, ge=64, description="generation budget per sample (unset: the judge's own; deepseek-grm: 1024)"
    )
    max_tokens_limit: int = Field(4096, ge=64, description="largest max_tokens a request may ask for")
    max_group_size: int = Field(4, ge=1, description="responses judged together in one GRM prompt")
    group_window_s: float = Field(
        0.05,
        ge=0,
        le=5,
        description="how long a row that leaves room in a GRM group waits for same-prompt rows of other calls "
        "(0: no grouping across calls)",
    )

    # Adaptive k (server/pipeline/adaptive.py, docs/adaptive.md)
    adaptive: Literal["off", "rank", "stderr", "confident"] = Field(
        "off",
        description="default stopping rule of adaptive k: off (always k samples), rank (stop once the order is "
        "provably final), stderr (stop once every mean vote's standard error is at most --adaptive-epsilon) or "
        "confident (stop once full k would order every pair as now with probability at least 1 - --adaptive-delta)",
    )
    adaptive_epsilon: float | None = Field(
        None,
        gt=0,
        description="stderr rule: default largest standard error of a mean vote to stop at, in the judge's vote "
        "units (/v1/info's vote scale); unset: 0.5 per 9 units of the scale's spread (0.5 on deepseek-grm's "
        "1..10, 1/18 on an A/B judge's 0..1 win rate; /v1/info says which)",
    )
    adaptive_delta: float = Field(
        DEFAULT_DELTA,
        ge=0,
        le=1,
        description="confident rule: default largest estimated probability that full k orders a pair of responses "
        "otherwise than now (0: only a proven order stops, as rank)",
    )
    adaptive_k_min: int = Field(4, ge=1, description="adaptive k: default fewest samples per group before a stop")

    # Soft votes (server/pipeline/soft_votes.py, docs/adaptive.md "Soft votes")
    votes: Literal["hard", "soft"] = Field(
        "hard",
        description="default votes of a sample: hard (the scores it wrote, the paper's) or soft (the expectation "
        "of the judge's own distribution over the scale's values where it wrote each, from the engine's top "
        "logprobs; pairwise: the probability of each verdict)",
    )

    # Meta RM (guided voting)
    meta_rm: str = Field(
        "auto", description="auto (the embedded meta RM for the embedded GRM), none, a folder or a cached hub name"
    )
    k_meta: int | None = Field(None, ge=1, description="samples kept to vote per group with a meta RM (default k/2)")
    meta_rm_device: str | None = Field(None, description="device of a transformers meta RM (cpu, cuda, cuda:1)")

    # OpenRLHF compatibility (/get_reward)
    openrlhf_reward: Literal["unit", "mean", "raw"] = Field(
        "unit",
        description="scale of /get_reward and /v1/reward rewards: unit ([0,1] by the judge's vote scale), mean "
        "(the mean vote, on that scale; deepseek-grm: 1..10) or raw (summed votes; for adaptive items and "
        "pairwise judges the mean times one judged set's votes at full k)",
    )

    openrlhf_labels: Literal["auto", "reference", "ignore"] = Field(
        "auto",
        description="/get_reward and /v1/reward labels: reference answers when the judge has a slot for one, "
        "else ignored and counted (auto); always references, refused (400) by a judge without the slot "
        "(reference); or ignored (ignore)",
    )
    chat_markup: Literal["auto", "none", "chatml", "llama3", "gemma", "mistral", "deepseek", "phi3"] = Field(
        "auto", description="chat template of /get_reward prompts: detected (auto), named, or none (text as is)"
    )
    policy_tokenizer: Path | None = Field(
        None, description="local folder of the policy's tokenizer: read /get_reward prompts with its chat template"
    )

    # Request limits
    max_responses_per_item: int = Field(64, ge=1, description="limit on responses per item")
    max_items_per_batch: int = Field(256, ge=1, description="limit on items per batch request")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="limit on request body size")
    max_render_bytes: int = Field(
        128 * 1024 * 1024,
        ge=1024,
        description="limit on a /v1/render answer's estimated size (each engine request repeats its "
        "conversation and responses); checked before any prompt is built",
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="deadline of a call in seconds (X-Request-Timeout may ask for less)"
    )
    drain_timeout_s: int = Field(120, ge=0, description="on SIGTERM, how long accepted requests may take to finish")
    max_concurrent_requests: int = Field(
        4096, ge=1, description="calls held at once, a memory guard (engine work is admitted by samples)"
    )
    max_inflight_samples: int | None = Field(
        None,
        ge=1,
        description="samples generating at once; beyond it engine requests wait, fairly by tenant "
        "(unset: the engine's batch limit, vLLM's max_num_seqs)",
    )
    max_queue_wait_s: float | None = Field(
        None,
        ge=0,
        description="refuse a call (429) whose estimated queue wait exceeds this, even if its deadline allows "
        "it (unset: the call's deadline alone decides)",
    )
    max_response_chars: int = Field(100_000, ge=1, description="limit on characters per response")
    max_conversation_chars: int = Field(200_000, ge=1, description="limit on characters of the conversation")

    # Auth: keys from GRM_API_KEYS (comma-separated) and/or a file with one key per line
    api_keys: str | None = Field(
        None, repr=False, description="comma-separated API keys; environment only, so keys stay out of `ps`"
    )
    api_key_file: Path | None = Field(None, description="file of API keys, one per line")
    metrics_public: bool = Field(True, description="with API keys set, keep /metrics open to scrapers")

    # Duplicate requests (client retries), see server/serving/dedup.py
    dedup_identical_requests: bool = Field(
        True, description="a request with the same body as a running or recent one shares its job"
    )
    idempotency_ttl_s: float = Field(
        300.0, ge=0, description="how long a finished job answers identical requests (0: never)"
    )
    idempotency_cache_size: int = Field(1024, ge=0, description="finished jobs remembered at most")
    idempotency_cache_mib: float = Field(
        64.0, gt=0, description="estimated memory of the finished jobs remembered, in MiB, at most"
    )
    idempotency_linger_s: float = Field(
        10.0, ge=0, description="how long a job whose client hung up keeps running for a retry to attach"
    )

    _judge: Judge = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _judge_defaults(cls, data: Any) -> Any:
        """Sampling left unset takes the judge's own defaults (what its authors publish); a judge file
        names the judge (``--judge`` is then left out, or the file's name)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        judge: Judge
        if data.get("judge_file") is not None:
            judge = read_judge_file(Path(data["judge_file"]), frozenset(JUDGES))
            if data.get("judge", judge.name) != judge.name:
                raise ValueError(f"give --judge or --judge-file, not both (the file's judge is {judge.name!r})")
            data["judge"] = judge.name
        else:
            name = data.get("judge", DEFAULT_JUDGE)
            if name not in JUDGES:
                raise ValueError(f"unknown judge {name!r}; known: {', '.join(sorted(JUDGES))} (or --judge-file)")
            judge = get_judge(name)
        sampling = judge.sampling
        data.setdefault("temperature", sampling.temperature)
        data.setdefault("top_p", sampling.top_p)
        if "max_tokens" not in data:
            data["max_tokens"] = sampling.max_tokens
            limit = int(data.get("max_tokens_limit", 4096))
            data["max_tokens_limit"] = max(limit, sampling.max_tokens)
        return data

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
        if self.judge_file is not None:
            self._judge = read_judge_file(self.judge_file, frozenset(JUDGES))
        elif self.judge == DEFAULT_JUDGE:  # --template picks DeepSeek-GRM's prompt version
            self._judge = DeepSeekGRM(template=get_template(self.template))
        else:
            self._judge = get_judge(self.judge)
        if refused := unsupported_aggregation(self._judge, self.aggregation):
            raise ValueError(f"--aggregation {self.aggregation}: {refused}")
        if self.votes == "soft" and (no_soft := soft_votes_problem(self._judge)):
            raise ValueError(f"--votes soft: {no_soft}")
        return self

    def stderr_epsilon(self) -> float:
        """The ``stderr`` rule's default bound, in vote units: ``--adaptive-epsilon`` when set, else the same
        share of the judge's vote scale (its aggregation's, :func:`vote_scale`) as 0.5 is of deepseek-grm's
        1..10, where it was tuned (docs/adaptive.md): on an A/B judge's 0..1 win rate, 1/18."""
        if self.adaptive_epsilon is not None:
            return self.adaptive_epsilon
        scale = vote_scale(self._judge, self.aggregation)
        return DEFAULT_EPSILON * (scale.high - scale.low) / DEFAULT_EPSILON_SPREAD

    def judge_profile(self) -> Judge:
        """The judge the server runs: the ``--judge-file`` profile, else the ``--judge`` one (DeepSeek-GRM
        with the ``--template`` version of its prompt)."""
        return self._judge

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

        ``auto`` means the embedded meta RM when the GRM is the embedded model judging as DeepSeek-GRM
        (it was trained on that model's DeepSeek-GRM samples) and none otherwise: a meta RM only helps
        the GRM and prompt it was trained for. With an ``adapter`` the GRM is another model (the
        fine-tuned one), so ``auto`` means none.
        """
        if self.meta_rm == "none":
            return None
        if self.meta_rm == "auto":
            embedded = self.model == EMBEDDED and self.engine == "vllm" and self.judge == DEFAULT_JUDGE
            embedded = embedded and self.adapter is None
            return "embedded" if embedded and self.judge_file is None else None
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
