"""The sampling stages of ``grm-train rft``: k trajectories per item, then hinted ones for the unsolved.

Both go through grm-serve's own pipeline (:class:`server.pipeline.scoring.Scorer`: the DeepSeek-GRM
template, format guidance, parser and shuffled response orders) on one in-process vLLM engine, started
only when a cache lacks something, and write the resumable JSONL cache of :mod:`meta_rm.training.sampling`
(an interrupted run resumes where it stopped).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from meta_rm.training.data import PreferenceItem
from meta_rm.training.sampling import SamplingConfig, load_cache, sample_items
from server.engines.base import Engine, GenerationRequest, GenerationResult
from server.pipeline.judges.deepseek import DeepSeekGRM, HintedDeepSeekGRM
from server.pipeline.prompts import DEFAULT_TEMPLATE, HINT_TEMPLATE, get_template
from server.pipeline.scoring import Scorer

MAX_GROUP_SIZE = 8  # responses judged together: a best-of-N item is one group, as in the paper


@dataclass
class Session:
    """An engine started on first use and the tokens it was asked for (prompt and generated)."""

    model: str
    cache_dir: Path | None
    concurrency: int
    format_guidance: bool
    make_engine: Callable[[], Engine] | None = None  # default: vLLM on ``model`` (tests pass a fake)
    engine: Engine | None = None
    tokens: dict[str, int] = field(default_factory=lambda: {"prompt": 0, "generation": 0})

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        assert self.engine is not None
        result = await self.engine.generate(request)
        self.tokens["prompt"] += result.prompt_tokens
        self.tokens["generation"] += sum(c.num_tokens for c in result.completions)
        return result

    async def start(self) -> None:
        if self.engine is None:
            from server.engines import create_engine
            from server.engines.model_files import default_cache_dir

            cache = self.cache_dir if self.cache_dir is not None else default_cache_dir()
            make = self.make_engine or (lambda: create_engine("vllm", model=self.model, cache_dir=cache))
            self.engine = await asyncio.to_thread(make)
            await self.engine.start()

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.shutdown()
            self.engine = None

    def scorer(self, judge: DeepSeekGRM) -> Scorer:
        guidance = self.format_guidance
        return Scorer(judge, generate=self.generate, max_group_size=MAX_GROUP_SIZE, format_guidance=guidance)

    async def sample(
        self,
        items: Sequence[PreferenceItem],
        config: SamplingConfig,
        cache: Path,
        *,
        hinted: bool,
        desc: str,
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Records of ``items`` (sampling only those the cache lacks) and the stage's counts.

        Raises:
            server.engines.EngineError: if the engine fails.
        """
        from tqdm import tqdm

        missing = [i for i in items if i.id not in load_cache(cache, config)]
        before = dict(self.tokens)
        skipped: list[str] = []
        if missing:
            await self.start()
        bar = tqdm(total=len(missing), desc=desc, unit="item", dynamic_ncols=True)
        parsed = [0, 0]

        def on_done(tokens: int, ok: int) -> None:
            parsed[0] += ok
            parsed[1] += config.k
            bar.set_postfix(parsed=f"{parsed[0]}/{parsed[1]}")
            bar.update(1)

        # A hinted config names HINT_TEMPLATE (its cache key); the hint is added to the plain template.
        template = get_template(DEFAULT_TEMPLATE if hinted else config.template)
        plain = self.scorer(DeepSeekGRM(template=template))

        def scorer_for(item: PreferenceItem) -> Scorer:
            return self.scorer(HintedDeepSeekGRM(template=template, preferred=item.responses[item.preferred]))

        try:
            records, skipped = await sample_items(
                plain, items, config, cache, concurrency=self.concurrency, on_done=on_done,
                scorer_for=scorer_for if hinted else None,
            )  # fmt: skip
        finally:
            bar.close()
        counts = {
            "items": len(items),
            "sampled_now": len(missing) - len(skipped),
            "from_cache": len(items) - len(missing),
            "skipped_too_long": len(skipped),
            "prompt_tokens_now": self.tokens["prompt"] - before["prompt"],
            "generation_tokens_now": self.tokens["generation"] - before["generation"],
        }
        return records, counts


def hint_config(config: SamplingConfig, k: int) -> SamplingConfig:
    """The cache key of hinted sampling: the plain config with the hint template and its own k."""
    return replace(config, template=HINT_TEMPLATE, k=k)
