"""The official Cohere SDK reranks through the live server (vLLM, the embedded GRM and meta RM)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import smoke_pairs

pytestmark = pytest.mark.e2e


def test_cohere_sdk_rerank_against_the_live_server(server_url):
    cohere = pytest.importorskip("cohere")
    pair = smoke_pairs()[0]
    documents = [pair["chosen"], pair["rejected"], "I don't know.", "Bananas are yellow."]
    co = cohere.ClientV2(api_key="unused", base_url=server_url, timeout=600)
    started = time.perf_counter()
    # The GRM's own options ride along as extra body fields, as the SDK allows.
    answer = co.rerank(
        model="grm",
        query=pair["prompt"],
        documents=documents,
        top_n=3,
        request_options={"additional_body_parameters": {"k": 2, "max_tokens": 160, "seed": 0}},
    )
    seconds = time.perf_counter() - started
    assert type(answer).__name__ == "V2RerankResponse"
    assert len(answer.results) == 3 and len({r.index for r in answer.results}) == 3
    scores = [r.relevance_score for r in answer.results]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    print(f"rerank: 4 documents, k=2, one GRM group, {seconds:.1f} s; relevance {scores}")
