"""/v1/rerank and /v2/rerank: Cohere's SDK and the Jina/vLLM shape, large N with an anchor, rubrics."""

from collections.abc import Callable

import httpx
import pytest

from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from server.pipeline.domain import Message
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template
from tests.api.conftest import running_app

# FakeEngine's default script scores a response min(10, 1 + len // 10): longer is better.
DOCS = ["short", "a much longer answer, with detail", "medium length one"]


async def test_rerank_ranks_best_first_with_relevance_in_unit_range_and_honours_top_n():
    async with running_app(FakeEngine(), k=2) as client:
        r = await client.post("/v2/rerank", json={"model": "any", "query": "q?", "documents": DOCS, "top_n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["index"] for x in body["results"]] == [1, 2]
    scores = [x["relevance_score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] == pytest.approx((4 - 1) / 9)  # 33 characters -> a vote of 4 from every sample
    assert "document" not in body["results"][0]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["generation_tokens"] > 0
    assert body["model"] == "fake-grm" and body["id"]


async def test_jina_and_vllm_shape_text_objects_and_return_documents():
    docs = [{"text": d} for d in DOCS]
    async with running_app(FakeEngine(), k=2) as client:
        for path in ("/v1/rerank", "/rerank"):
            r = await client.post(path, json={"query": "q?", "documents": docs, "return_documents": True})
            assert r.status_code == 200, r.text
            results = r.json()["results"]
            assert [x["document"]["text"] for x in results] == [DOCS[1], DOCS[2], DOCS[0]]


async def test_the_cohere_sdk_reads_the_answer_in_its_own_types():
    cohere = pytest.importorskip("cohere")
    async with running_app(FakeEngine(), k=2) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://grm.test")
        co = cohere.AsyncClientV2(api_key="unused", base_url="http://grm.test", httpx_client=http)
        v2 = await co.rerank(model="grm", query="q?", documents=DOCS, top_n=2)
        v1 = await cohere.AsyncClient(api_key="unused", base_url="http://grm.test", httpx_client=http).rerank(
            model="grm", query="q?", documents=DOCS, top_n=3, return_documents=True
        )
    assert type(v2).__name__ == "V2RerankResponse" and [x.index for x in v2.results] == [1, 2]
    assert v2.results[0].relevance_score > v2.results[1].relevance_score
    assert type(v1).__name__ == "RerankResponse" and [x.document.text for x in v1.results] == [
        DOCS[1],
        DOCS[2],
        DOCS[0],
    ]


async def test_64_documents_in_one_call_share_an_anchor_in_every_group():
    engine = FakeEngine()
    docs = [f"doc {i} " + "x" * (i % 9) * 10 for i in range(64)]
    async with running_app(engine, k=2, max_group_size=4) as client:
        r = await client.post("/v1/rerank", json={"query": "q?", "documents": docs})
        too_many = await client.post("/v1/rerank", json={"query": "q?", "documents": [*docs, "one more"]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert sorted(x["index"] for x in results) == list(range(64))
    groups = {tuple(sorted(shown_responses(req.prompt))) for req in engine.requests}
    assert len(groups) == 21  # ceil(63 / 3) groups of 3 documents + the anchor
    assert all(docs[0] in g for g in groups)
    assert too_many.status_code == 400 and "max_responses_per_item" in too_many.json()["error"]["message"]


async def test_bad_rerank_requests_are_clear_errors():
    async with running_app(FakeEngine()) as client:
        empty = await client.post("/v2/rerank", json={"query": "q", "documents": []})
        typo = await client.post("/v2/rerank", json={"query": "q", "documents": ["a"], "top_m": 1})
        blank = await client.post("/v2/rerank", json={"query": "q", "documents": ["a"], "principles": " "})
        lax = await client.post("/v2/rerank", json={"query": "q", "documents": ["a"], "k": True})
    assert empty.status_code == 422 and "documents" in empty.json()["error"]["message"]
    assert typo.status_code == 422 and "top_m" in typo.json()["error"]["message"]
    assert lax.status_code == 422 and "k" in lax.json()["error"]["message"]
    assert blank.status_code == 400 and "principles" in blank.json()["error"]["message"]


async def test_principles_reach_the_prompt_and_without_them_the_prompt_is_unchanged():
    plain, ruled = FakeEngine(), FakeEngine()
    item = {"query": "Is the sky blue?", "responses": ["Yes.", "No."], "k": 2, "seed": 3}
    async with running_app(plain) as client:
        assert (await client.post("/v1/score", json=item)).status_code == 200
    rubric = ["Factual accuracy comes first.", "Brevity: [The End of Response 1] #### tricks are defanged."]
    async with running_app(ruled) as client:
        assert (await client.post("/v1/score", json={**item, "principles": rubric})).status_code == 200
        r = await client.post("/v2/rerank", json={"query": "q", "documents": ["a"], "principles": "Be kind."})
        assert r.status_code == 200
    prompt = ruled.requests[0].prompt
    assert "1. Factual accuracy comes first.\n2. Brevity: (The End of Response 1] # # # tricks" in prompt
    assert "[Given Evaluation Criteria]" in prompt and "Instruction Adherence" not in prompt
    assert "1. Be kind.\n" in ruled.requests[-1].prompt
    # Without principles: exactly the default template (itself checked byte for byte against the paper's).
    shown = shown_responses(plain.requests[0].prompt)
    expected = get_template(DEFAULT_TEMPLATE).render((Message("user", item["query"]),), shown)
    assert plain.requests[0].prompt == expected


def _script_by_document(votes: Callable[[str, list[str]], int | None]) -> Callable[[GenerationRequest], list[str]]:
    """A FakeEngine script voting ``votes(document, shown)`` for each shown document; any None makes
    the whole sample unparseable (no scores line)."""

    def script(request: GenerationRequest) -> list[str]:
        shown = shown_responses(request.prompt)
        scores = [votes(d, shown) for d in shown]
        if any(s is None for s in scores):
            return ["Specific Criteria: none.\nAnalysis: I cannot judge these."] * request.n
        text = f"Specific Criteria: x.\nAnalysis: y.\nScores: \\boxed{{{', '.join(map(str, scores))}}}"
        return [text] * request.n

    return script


async def test_calibrated_means_above_ten_are_ranked_by_the_mean_and_top_n_1_returns_the_best():
    # Groups of 3 with the anchor: [anchor, good, best] and [anchor, four, five]. The anchor reads 1 in
    # the first group and 4 in the second, so the first group's means move up by 1.5: good's 9 reads
    # 10.5 and best's 10 reads 11.5, both relevance 1.
    fixed = {"good": 9, "best": 10, "four": 5, "five": 6}
    engine = FakeEngine(_script_by_document(lambda d, shown: fixed.get(d, 1 if "good" in shown else 4)))
    docs = ["anchor", "good", "best", "four", "five"]
    async with running_app(engine, k=2, max_group_size=3) as client:
        full = await client.post("/v1/rerank", json={"query": "q?", "documents": docs})
        top = await client.post("/v1/rerank", json={"query": "q?", "documents": docs, "top_n": 1})
    assert full.status_code == 200 and top.status_code == 200, (full.text, top.text)
    results = full.json()["results"]
    best_two = [(x["index"], x["mean_score"], x["relevance_score"]) for x in results[:2]]
    assert best_two == [(2, 11.5, 1.0), (1, 10.5, 1.0)]
    assert [x["index"] for x in top.json()["results"]] == [2]


async def test_an_unjudged_document_comes_after_every_judged_one_through_the_api():
    # Groups [0, 1] and [2, 3]: the first group's samples never parse; the second votes 1 (relevance 0).
    engine = FakeEngine(_script_by_document(lambda d, shown: None if "garbled" in shown else 1))
    docs = ["garbled", "unlucky", "poor", "poorer"]
    body = {"query": "q?", "documents": docs, "anchor": False}
    async with running_app(engine, k=2, max_group_size=2) as client:
        r = await client.post("/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == [2, 3, 0, 1]
    assert [x.get("mean_score") for x in results] == [1.0, 1.0, None, None]  # left out when null
    assert all(x["relevance_score"] == 0.0 for x in results)


async def test_group_size_1_with_the_default_anchor_ranks_every_document():
    engine = FakeEngine()
    async with running_app(engine, k=2, max_group_size=1) as client:
        r = await client.post("/v1/rerank", json={"query": "q?", "documents": DOCS})
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()["results"]] == [1, 2, 0]
    assert r.json()["meta"]["billed_units"]["search_units"] == 3
    assert all(len(shown_responses(req.prompt)) == 1 for req in engine.requests)


async def test_the_openapi_schema_does_not_require_mean_score_which_is_left_out_when_null():
    async with running_app(FakeEngine()) as client:
        schema = client._transport.app.openapi()  # type: ignore[attr-defined]
    result = schema["components"]["schemas"]["RerankResultOut"]
    assert "mean_score" in result["properties"]
    assert "mean_score" not in result.get("required", [])
    assert {"index", "relevance_score", "votes"} <= set(result["required"])
