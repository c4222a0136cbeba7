"""What the benchmarks that run grm-serve's plan straight on AsyncLLM share: the pairs, their specs,
the direct generate call and the vote count. Importable once the repository root is on ``sys.path``
(every benchmark puts it there)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from server.engines.base import GenerationRequest, GenerationResult
from server.pipeline.domain import Message
from server.pipeline.parsing import ParseError, parse_sample
from server.pipeline.scoring import ScoreSpec


def load_pairs(path: Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` preference pairs of a JSONL file as ``{messages, responses: [chosen, rejected]}``."""
    pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"messages": p["messages"], "responses": [p["chosen"], p["rejected"]]} for p in pairs[:n]]


def pair_specs(pairs: Sequence[dict[str, Any]], k: int, temperature: float, max_tokens: int) -> list[ScoreSpec]:
    """One seeded spec per pair (seed = its index), so every path generates the same samples."""
    return [
        ScoreSpec(
            messages=tuple(Message(m["role"], m["content"]) for m in p["messages"]),
            responses=tuple(p["responses"]),
            k=k,
            temperature=temperature,
            top_p=1.0,
            max_tokens=max_tokens,
            seed=i,
        )
        for i, p in enumerate(pairs)
    ]


def direct_generate(llm: Any, tokenizer: Any) -> Callable[[GenerationRequest], Coroutine[Any, Any, GenerationResult]]:
    """What a user's own script on AsyncLLM does per request: tokenize on its loop, then generate.

    Drop the returned function before shutting ``llm`` down for good: it holds a reference.
    """
    from server.engines.vllm import encode_chat, generate_ids

    async def generate(request: GenerationRequest) -> GenerationResult:
        return await generate_ids(llm, encode_chat(tokenizer, request), request)

    return generate


def count_votes(texts: Sequence[str], n_responses: int) -> tuple[int, int]:
    """(parsed samples, valid votes) of generated texts judging ``n_responses`` responses."""
    parsed = 0
    for text in texts:
        try:
            parse_sample(text, n_responses)
        except ParseError:
            continue
        parsed += 1
    return parsed, parsed * n_responses
