"""Rerank inputs are checked in linear time and within limits before any document text is built
(review of issue #30, finding 1: 20,000 rank_fields held the event loop for seconds)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.engines.fake import FakeEngine
from server.serving import rerank_documents
from server.serving.errors import APIError
from tests.api.conftest import running_app, with_stall


async def test_more_rank_fields_than_the_cap_are_refused_without_stalling_the_server():
    fields = [f"f{i}" for i in range(20_000)]  # a 0.19 MB body: far under the body limit
    body = json.dumps({"query": "q", "documents": [{"text": "a", "f0": "x"}, {"text": "b"}], "rank_fields": fields})
    async with running_app(FakeEngine(), k=1) as client:
        reply, stall = await with_stall(
            lambda: client.post("/v1/rerank", content=body, headers={"content-type": "application/json"})
        )
    assert reply.status_code == 422 and "rank_fields" in reply.json()["error"]["message"]
    assert stall < 0.5  # was 7 to 13 s: each field was counted in the whole list


async def test_the_cap_of_rank_fields_is_accepted():
    fields = [f"f{i}" for i in range(rerank_documents.MAX_RANK_FIELDS)]
    documents = [{f: "x" for f in fields}, {"f0": "a much longer value"}]
    async with running_app(FakeEngine(), k=1) as client:
        reply = await client.post("/v1/rerank", json={"query": "q", "documents": documents, "rank_fields": fields})
    assert reply.status_code == 200, reply.text


class CountedName(str):
    """A field name that counts its comparisons with other names (hashing is not counted)."""

    comparisons = 0
    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        CountedName.comparisons += 1
        return str.__eq__(self, other)


def test_a_repeated_rank_field_is_found_comparing_each_name_a_bounded_number_of_times():
    """Counted, not timed: comparing every name with every other (``fields.count`` per name, 20 s at
    30,000 names) made 9 million comparisons at 3,000 names; hashing them finds the repeat with a handful."""
    fields = [CountedName(f"f{i}") for i in range(3_000)] + [CountedName("f7")]  # no cap here: the check's own cost
    documents = [dict.fromkeys(fields, "x")]
    CountedName.comparisons = 0
    with pytest.raises(APIError) as refused:
        rerank_documents.judged_texts(documents, fields, max_documents=64, max_chars=10**9)
    assert CountedName.comparisons <= len(fields)
    assert refused.value.status == 400 and "'f7' more than once" in refused.value.message


async def test_a_documents_text_with_its_rank_fields_joined_counts_against_max_response_chars():
    # Each value fits the limit; "title: ...\nbody: ..." does not.
    documents = [{"title": "t" * 12, "body": "b" * 12}, {"title": "short", "body": "short"}]
    async with running_app(FakeEngine(), k=1, max_response_chars=30) as client:
        reply = await client.post(
            "/v1/rerank", json={"query": "q", "documents": documents, "rank_fields": ["title", "body"]}
        )
    message = reply.json()["error"]["message"]
    shown = len("title: " + "t" * 12 + "\nbody: " + "b" * 12)
    assert reply.status_code == 400
    assert f"documents[0] is {shown} characters" in message and "max_response_chars = 30" in message


@given(
    st.lists(st.dictionaries(st.sampled_from("abcd"), st.text(max_size=5), min_size=1), min_size=1, max_size=4),
    st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True),
)
def test_the_size_checked_is_the_size_of_the_text_judged(documents, fields):
    try:
        texts = rerank_documents.judged_texts(documents, fields, max_documents=64, max_chars=10**6)
    except APIError:
        return  # a document with none of the fields, or a field in none of them
    longest = max(map(len, texts))
    first = [len(t) for t in texts].index(longest)
    with pytest.raises(APIError, match=rf"documents\[{first}\] is {longest} characters"):
        rerank_documents.judged_texts(documents, fields, max_documents=64, max_chars=longest - 1)


def test_the_document_count_is_checked_before_any_document_is_read():
    documents = [{"other": "x"}] * 65  # none has the text field: reading them would be another 400
    with pytest.raises(APIError) as refused:
        rerank_documents.judged_texts(documents, None, max_documents=64, max_chars=100)
    assert "65 documents exceed the server limit max_responses_per_item = 64" in refused.value.message
