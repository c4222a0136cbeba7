"""Sample GRM trajectories for preference items and keep them in a resumable JSONL cache.

Each line holds one item and its k samples exactly as the scoring service produced them (the
order each sample saw, its text, its parsed scores in the item's order), plus the sampling config.
A rerun with the same config skips the items already in the file, so an interrupted run loses at
most the items that were in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from meta_rm.training.data import PreferenceItem
from server.engines import PromptTooLongError
from server.pipeline.domain import SampleStatus
from server.pipeline.scoring import Scorer, ScoreSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingConfig:
    """What decides the samples; a cache line is reused only when all of it matches."""

    model: str
    template: str
    k: int
    temperature: float
    max_tokens: int
    format_guidance: bool
    seed: int
    # The content hash of a LoRA adapter merged onto ``model`` (``--adapter``), None for the model alone.
    # Left out of the cache line when None, so caches written before the field existed stay valid.
    adapter: str | None = None

    def as_key(self) -> dict[str, Any]:
        """The config as cache lines record it (what :func:`load_cache` matches)."""
        key = asdict(self)
        if key["adapter"] is None:
            del key["adapter"]
        return key


@dataclass(frozen=True)
class SamplingRun:
    """One in-process sampling run: what decides the samples, and where they go.

    Attributes:
        config: the sampling choices (the cache key).
        trajectories: the JSONL cache to resume from and append to.
        cache_dir: where the embedded GRM is converted (None: the server's default).
        concurrency: items in flight at once.
        max_group_size: responses judged together in one GRM prompt.
        adapter: a peft LoRA adapter folder merged onto the model at load (its hash is ``config.adapter``).
    """

    config: SamplingConfig
    trajectories: Path
    cache_dir: Path | None = None
    concurrency: int = 8
    max_group_size: int = 8
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    adapter: Path | None = None


def item_seed(item_id: str, seed: int) -> int:
    """A per-item sampling seed that does not depend on the order items are processed in."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def load_cache(path: Path, config: SamplingConfig) -> dict[str, dict[str, Any]]:
    """Records of ``path`` made with ``config``, by item id (a torn last line is ignored)."""
    if not path.exists():
        return {}
    wanted = config.as_key()
    records: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line a killed run was writing
        if record.get("config") == wanted:
            records[record["id"]] = record
    return records


def end_torn_line(path: Path) -> None:
    """End the line a killed run left unfinished, so that the next record appended starts a line of its
    own (appended to the torn one, it would be unreadable and lost too)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        f.seek(-1, 2)
        if f.read(1) != b"\n":
            f.write(b"\n")


def to_record(item: PreferenceItem, config: SamplingConfig, samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": item.id,
        "source": item.source,
        "subset": item.subset,
        "prompt_key": item.prompt_key,
        "messages": [{"role": m.role, "content": m.content} for m in item.messages],
        "responses": list(item.responses),
        "preferred": item.preferred,
        "config": config.as_key(),
        "samples": samples,
    }


async def sample_items(
    scorer: Scorer,
    items: Sequence[PreferenceItem],
    config: SamplingConfig,
    cache: Path,
    *,
    concurrency: int = 8,
    on_done: Callable[[int, int], None] | None = None,
    scorer_for: Callable[[PreferenceItem], Scorer] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Sample every item not yet in ``cache`` and append it there.

    Args:
        scorer: the scoring pipeline (the engine must be started).
        items: what to sample.
        config: sampling choices; must match how ``scorer`` was built.
        cache: the JSONL file to resume from and append to.
        concurrency: items in flight at once (the engine batches their requests).
        on_done: called with (generated tokens, samples) after each item, for progress display.
        scorer_for: the pipeline for one item, where items are judged each their own way (hinted
            sampling: a judge that knows the item's preferred response); ``scorer`` otherwise.

    Returns:
        The records of all ``items`` (cached and new), and the ids skipped because the prompt does
        not fit the model's context.

    Raises:
        server.engines.EngineError: if the engine fails.
    """
    done = load_cache(cache, config)
    todo = [i for i in items if i.id not in done]
    skipped: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    cache.parent.mkdir(parents=True, exist_ok=True)

    async def one(item: PreferenceItem, out: Any) -> None:
        spec = ScoreSpec(
            messages=item.messages,
            responses=item.responses,
            k=config.k,
            temperature=config.temperature,
            top_p=1.0,
            max_tokens=config.max_tokens,
            seed=item_seed(item.id, config.seed),
        )
        async with gate:
            try:
                chosen = scorer_for(item) if scorer_for is not None else scorer
                result = await chosen.score(spec, f"meta-{item_seed(item.id, 0)}")
            except PromptTooLongError:
                skipped.append(item.id)
                return
        samples = [
            {
                "permutation": [result.groups[s.group][p] for p in s.permutation],
                "text": s.text,
                "status": s.status.value,
                "scores": list(s.scores) if s.scores is not None else None,
                "generation_tokens": s.generation_tokens,
            }
            for s in result.samples
        ]
        record = to_record(item, config, samples)
        done[item.id] = record
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        if on_done is not None:
            parsed = sum(s["status"] == SampleStatus.PARSED for s in samples)
            on_done(result.generation_tokens, parsed)

    if todo:
        end_torn_line(cache)
    with cache.open("a", encoding="utf-8") as out:
        async with asyncio.TaskGroup() as tg:
            for item in todo:
                tg.create_task(one(item, out))
    return [done[i.id] for i in items if i.id in done], skipped


async def run_sampling(run: SamplingRun, items: Sequence[PreferenceItem]) -> list[dict[str, Any]]:
    """Start the GRM engine in this process, sample what the cache lacks, shut the engine down.

    Returns:
        The records of ``items`` that have samples (cached or new), in the order of ``items``.

    Raises:
        server.engines.model_files.ModelNotFoundError: if the GRM cannot be found locally.
        server.engines.EngineError: if the engine fails.
    """
    from tqdm import tqdm

    from server.engines import create_engine
    from server.engines.model_files import default_cache_dir
    from server.pipeline.judges import DeepSeekGRM
    from server.pipeline.prompts import get_template

    config = run.config
    cached = load_cache(run.trajectories, config)
    if all(i.id in cached for i in items):
        return [cached[i.id] for i in items]
    cache_dir = run.cache_dir if run.cache_dir is not None else default_cache_dir()
    engine = await asyncio.to_thread(
        create_engine,
        "vllm",
        model=config.model,
        cache_dir=cache_dir,
        engine_kwargs=run.engine_kwargs,
        adapter=run.adapter,
    )
    await engine.start()
    scorer = Scorer(
        DeepSeekGRM(template=get_template(config.template)),
        generate=engine.generate,
        max_group_size=run.max_group_size,
        format_guidance=config.format_guidance,
    )
    missing = sum(i.id not in cached for i in items)
    bar = tqdm(total=missing, desc="sampling", unit="item", dynamic_ncols=True)
    stats = {"tokens": 0, "parsed": 0, "samples": 0}

    def on_done(tokens: int, parsed: int) -> None:
        stats["tokens"] += tokens
        stats["parsed"] += parsed
        stats["samples"] += config.k
        bar.set_postfix(parsed=f"{stats['parsed']}/{stats['samples']}", tok=stats["tokens"])
        bar.update(1)

    try:
        records, skipped = await sample_items(
            scorer, items, config, run.trajectories, concurrency=run.concurrency, on_done=on_done
        )
    finally:
        bar.close()
        await engine.shutdown()
    if skipped:
        log.warning("%d item(s) skipped: prompt too long for the model's context", len(skipped))
    return records
