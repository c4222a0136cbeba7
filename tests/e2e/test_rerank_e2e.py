"""The official Cohere SDK (7.x, v1 and v2 clients) reranks through the live server (vLLM, the
embedded GRM and meta RM): strings, v1 object documents with ``rank_fields``, v2 ``relevant_spans``."""

from __future__ import annotations

import time

import pytest

from server.engines.fake import shown_responses
from tests.conftest import smoke_pairs

pytestmark = pytest.mark.e2e

cohere = pytest.importorskip("cohere")

# The GRM's own options ride along as extra body fields, as the SDK allows.
GRM_OPTIONS = {"additional_body_parameters": {"k": 2, "max_tokens": 160, "seed": 0}}


def test_cohere_sdk_rerank_against_the_live_server(server_url):
    pair = smoke_pairs()[0]
    documents = [pair["chosen"], pair["rejected"], "I don't know.", "Bananas are yellow."]
    co = cohere.ClientV2(api_key="unused", base_url=server_url, timeout=600)
    started = time.perf_counter()
    answer = co.rerank(model="grm", query=pair["prompt"], documents=documents, top_n=3, request_options=GRM_OPTIONS)
    seconds = time.perf_counter() - started
    assert type(answer).__name__ == "V2RerankResponse"
    assert len(answer.results) == 3 and len({r.index for r in answer.results}) == 3
    scores = [r.relevance_score for r in answer.results]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    print(f"rerank: 4 documents, k=2, one GRM group, {seconds:.1f} s; relevance {scores}")


def test_cohere_v1_sdk_ranks_object_documents_on_rank_fields_against_the_live_server(grm_server):
    pair = smoke_pairs()[0]
    documents = [
        {"id": "a", "title": "Chosen", "body": pair["chosen"]},
        {"id": "b", "title": "Rejected", "body": pair["rejected"]},
    ]
    co = cohere.Client(api_key="unused", base_url=grm_server.url, timeout=600)
    logged_before = len(grm_server.records("GRM prompt"))
    answer = co.rerank(
        model="grm",
        query=pair["prompt"],
        documents=documents,
        rank_fields=["title", "body"],
        return_documents=True,
        request_options=GRM_OPTIONS,
    )
    assert type(answer).__name__ == "RerankResponse"
    assert sorted(r.index for r in answer.results) == [0, 1]
    assert {r.document.id for r in answer.results} == {"a", "b"}  # object documents come back whole
    prompts = [r["prompt"] for r in grm_server.records("GRM prompt")[logged_before:]]
    expected = {f"title: {d['title']}\nbody: {d['body']}" for d in documents}
    assert prompts and all(set(shown_responses(p)) == expected for p in prompts)


def test_cohere_v2_sdk_relevant_spans_is_answered_without_spans_against_the_live_server(server_url):
    pair = smoke_pairs()[0]
    co = cohere.ClientV2(api_key="unused", base_url=server_url, timeout=600)
    answer = co.rerank(
        model="grm",
        query=pair["prompt"],
        documents=[pair["chosen"], pair["rejected"]],
        relevant_spans=cohere.RerankRelevantSpans(mode="enabled", threshold=0.1, max_spans=3),
        request_options=GRM_OPTIONS,
    )
    assert sorted(r.index for r in answer.results) == [0, 1]
    assert all(r.relevant_spans is None for r in answer.results)
    assert answer.meta.warnings and "relevant_spans" in answer.meta.warnings[0]
