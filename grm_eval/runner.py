"""Get k samples per item: in-process through the pipeline (vLLM), or from a running server (``--url``).

Both write the same resumable JSONL cache as ``grm-meta-rm`` (:mod:`meta_rm.training.sampling`), one record per
item with every sample's order, scores and text, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meta_rm.training.data import PreferenceItem
from meta_rm.training.sampling import SamplingConfig, SamplingRun, item_seed, load_cache, run_sampling, to_record


def _sample_text(s: dict[str, Any]) -> str:
    """A parsed sample's output rebuilt from its fields (the server returns raw text only for unparsed ones)."""
    if s.get("text"):
        return str(s["text"])
    shown = [s["scores"][s["responses"].index(i)] for i in s["permutation"]]
    box = ", ".join(map(str, shown))
    return f"Specific Criteria: {s['principles']}\nAnalysis: {s['critique']}\nScores: \\boxed{{{box}}}"


def from_server_samples(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cache's sample records from ``/v1/score`` samples (one group of responses)."""
    return [
        {
            "permutation": s["permutation"],
            "text": _sample_text(s),
            "status": s["status"],
            "scores": s["scores"],
            "generation_tokens": s["generation_tokens"],
            "meta_score": s.get("meta_score"),
            "kept": s.get("kept"),
        }
        for s in samples
    ]


async def sample_over_http(
    url: str,
    items: Sequence[PreferenceItem],
    config: SamplingConfig,
    cache: Path,
    *,
    concurrency: int,
    api_key: str | None,
    on_done: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Sample the items the cache lacks from a running grm-serve; returns all records of ``items``.

    Raises:
        httpx.HTTPError: when the server cannot be reached or answers with an error.
    """
    import httpx

    done = load_cache(cache, config)
    gate = asyncio.Semaphore(concurrency)
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    cache.parent.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=url, timeout=3600, headers=headers) as http:

        async def one(item: PreferenceItem, out: Any) -> None:
            body = {
                "messages": [{"role": m.role, "content": m.content} for m in item.messages],
                "responses": list(item.responses),
                "k": config.k,
                "temperature": config.temperature,
                "max_tokens": config.max_tokens,
                "seed": item_seed(item.id, config.seed),
                "return_samples": True,
            }
            async with gate:
                r = await http.post("/v1/score", json=body)
            r.raise_for_status()
            payload = r.json()
            samples = from_server_samples(payload["samples"])
            record = to_record(item, config, samples)
            done[item.id] = record
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            if on_done is not None:
                on_done(payload["usage"]["generation_tokens"], payload["valid_samples"])

        with cache.open("a", encoding="utf-8") as out:
            async with asyncio.TaskGroup() as tg:
                for item in items:
                    if item.id not in done:
                        tg.create_task(one(item, out))
    return [done[i.id] for i in items if i.id in done]


def served_model(url: str, api_key: str | None) -> str:
    """The model a running grm-serve reports on ``/v1/info``.

    Raises:
        httpx.HTTPError: when the server cannot be reached or answers with an error.
    """
    import httpx

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{url.rstrip('/')}/v1/info", headers=headers, timeout=30)
    response.raise_for_status()
    return str(response.json()["model"])


def sample_in_process(run: SamplingRun, items: list[PreferenceItem]) -> list[dict[str, Any]]:
    """Start the GRM engine here (as ``grm-meta-rm sample`` does) and fill the run's cache."""
    return asyncio.run(run_sampling(run, items))
