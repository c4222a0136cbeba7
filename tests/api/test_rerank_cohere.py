"""Cohere's v1/v2 rerank request shapes through the official SDK: object documents with ``rank_fields``,
``relevant_spans``, and the clear errors around them (issue #30, finding 11)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from server.engines.fake import FakeEngine, shown_responses
from tests.api.conftest import running_app

cohere = pytest.importorskip("cohere")

# FakeEngine's default script scores a shown response min(10, 1 + len // 10): longer is better.
BOOKS = [
    {"id": "b1", "title": "Dune", "body": "Sand."},
    {"id": "b2", "title": "Foundation", "body": "Psychohistory predicts the fall of an empire, in detail."},
    {"id": "b3", "title": "Solaris", "body": "An ocean that thinks."},
]


@asynccontextmanager
async def sdk(engine: FakeEngine) -> AsyncIterator[tuple[object, object]]:
    """Cohere's async v1 and v2 clients talking to the app in-process."""
    async with running_app(engine, k=2) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://grm.test") as http:
            kwargs = {"api_key": "unused", "base_url": "http://grm.test", "httpx_client": http}
            yield cohere.AsyncClient(**kwargs), cohere.AsyncClientV2(**kwargs)


def judged(engine: FakeEngine) -> set[str]:
    """Every document text the GRM was shown."""
    return {text for request in engine.requests for text in shown_responses(request.prompt)}


async def test_v1_sdk_ranks_object_documents_on_the_named_fields_as_name_value_lines_in_order():
    engine = FakeEngine()
    async with sdk(engine) as (v1, _):
        answer = await v1.rerank(model="grm", query="A classic?", documents=BOOKS, rank_fields=["body", "title"])
    assert judged(engine) == {f"body: {b['body']}\ntitle: {b['title']}" for b in BOOKS}  # "id" is not shown
    assert [r.index for r in answer.results] == [1, 2, 0]


async def test_v1_sdk_returns_object_documents_whole_with_return_documents():
    async with sdk(FakeEngine()) as (v1, _):
        answer = await v1.rerank(
            model="grm", query="A classic?", documents=BOOKS, rank_fields=["title", "body"], return_documents=True
        )
    assert [r.document.id for r in answer.results] == ["b2", "b3", "b1"]
    assert answer.results[0].document.title == "Foundation" and answer.results[0].document.body == BOOKS[1]["body"]


async def test_one_rank_field_is_judged_as_its_bare_value():
    engine = FakeEngine()
    docs = [{"body": b["body"]} for b in BOOKS]  # the issue's {"body"} documents
    async with sdk(engine) as (v1, _):
        answer = await v1.rerank(model="grm", query="A classic?", documents=docs, rank_fields=["body"])
    assert judged(engine) == {b["body"] for b in BOOKS}
    assert [r.index for r in answer.results] == [1, 2, 0]


async def test_without_rank_fields_object_documents_are_judged_on_text_and_come_back_whole():
    engine = FakeEngine()
    docs = [{"title": b["title"], "text": b["body"]} for b in BOOKS]  # the issue's {"title", "text"} documents
    async with sdk(engine) as (v1, _):
        answer = await v1.rerank(model="grm", query="A classic?", documents=docs, return_documents=True)
    assert judged(engine) == {b["body"] for b in BOOKS}
    best = answer.results[0].document
    assert (best.title, best.text) == ("Foundation", BOOKS[1]["body"])


async def test_a_document_lacking_one_rank_field_is_shown_the_fields_it_has():
    engine = FakeEngine()
    docs = [{"title": "Dune", "body": "Sand."}, {"body": "No title here."}]
    async with running_app(engine, k=2) as client:
        r = await client.post("/v1/rerank", json={"query": "q", "documents": docs, "rank_fields": ["title", "body"]})
    assert r.status_code == 200, r.text
    assert judged(engine) == {"title: Dune\nbody: Sand.", "body: No title here."}


async def test_strings_and_objects_mix_and_rank_fields_leave_strings_as_they_are():
    engine = FakeEngine()
    docs = ["A plain string document.", {"title": "Dune", "body": "Sand."}]
    async with running_app(engine, k=2) as client:
        r = await client.post("/v1/rerank", json={"query": "q", "documents": docs, "rank_fields": ["title", "body"]})
    assert r.status_code == 200, r.text
    assert judged(engine) == {"A plain string document.", "title: Dune\nbody: Sand."}


async def test_v2_sdk_relevant_spans_is_accepted_and_the_answer_says_no_spans_were_computed():
    plain, spans = FakeEngine(), FakeEngine()
    docs = [b["body"] for b in BOOKS]
    async with sdk(plain) as (_, v2):
        without = await v2.rerank(model="grm", query="A classic?", documents=docs)
    async with sdk(spans) as (_, v2):
        request = cohere.RerankRelevantSpans(mode="enabled", threshold=0.1, max_spans=3)
        answer = await v2.rerank(model="grm", query="A classic?", documents=docs, relevant_spans=request)
    ranked = [(r.index, r.relevance_score) for r in answer.results]
    assert ranked == [(r.index, r.relevance_score) for r in without.results]
    assert all(r.relevant_spans is None for r in answer.results)  # no spans are made up
    assert len(answer.meta.warnings) == 1 and "relevant_spans" in answer.meta.warnings[0]
    assert without.meta.warnings is None


async def test_relevant_spans_disabled_adds_no_warning():
    async with sdk(FakeEngine()) as (_, v2):
        answer = await v2.rerank(
            model="grm", query="q", documents=["a"], relevant_spans=cohere.RerankRelevantSpans(mode="disabled")
        )
    assert answer.meta.warnings is None and answer.results[0].relevant_spans is None


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"documents": [{"title": "T", "body": "B"}]}, 400, "documents[0] is an object without a 'text' field"),
        ({"documents": [{"title": "T"}, {"body": "B"}], "rank_fields": ["title"]}, 400, "documents[1] has none"),
        ({"documents": [{"title": "T"}], "rank_fields": ["title", "autor"]}, 400, "['autor'] are in none"),
        ({"documents": [{"title": "T"}], "rank_fields": ["title", "title"]}, 400, "'title' more than once"),
        ({"documents": [{"title": "T", "year": 1965}], "rank_fields": ["title"]}, 422, "documents.0.object.year"),
        ({"documents": [7]}, 422, "documents.0: Input should be a string or an object of string fields"),
        ({"documents": [{"text": "T"}], "rank_fields": []}, 422, "rank_fields"),
        ({"documents": [{"text": "T"}], "rank_fields": [""]}, 422, "rank_fields.0"),
        ({"documents": ["a"], "relevant_spans": {"mode": "sometimes"}}, 422, "relevant_spans.mode"),
        ({"documents": ["a"], "relevant_spans": {"mode": "enabled", "threshold": 2}}, 422, "relevant_spans.threshold"),
        ({"documents": ["a"], "relevant_spans": {"mode": "enabled", "max_spans": 0}}, 422, "relevant_spans.max_spans"),
    ],
)
async def test_bad_document_and_span_shapes_get_an_error_naming_the_problem(body, status, named):
    engine = FakeEngine()
    async with running_app(engine) as client:
        r = await client.post("/v1/rerank", json={"query": "q", **body})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request" and error["code"] == status and named in error["message"]
    assert engine.requests == []  # rejected before any generation


async def test_relevant_spans_threshold_takes_whole_numbers_too():
    async with running_app(FakeEngine()) as client:
        r = await client.post(
            "/v2/rerank", json={"query": "q", "documents": ["a"], "relevant_spans": {"mode": "enabled", "threshold": 0}}
        )
    assert r.status_code == 200, r.text
