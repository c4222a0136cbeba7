"""What the GRM is shown of each rerank document: Cohere v1's object documents and ``rank_fields`` (pure).

Cohere's contract (v1 API reference, "Reranking best practices"): a document is a string or a JSON
object of string fields; ``rank_fields`` names the fields to rank on, in order, and the order matters;
without ``rank_fields`` the ``text`` field is used. Cohere does not publish how it turns the fields
into its model's input; for structured data it recommends YAML-like ``key: value`` text, and that is
what the judge is shown here:

* a string document: the string itself (``rank_fields`` apply to objects only, as at Cohere);
* an object, no ``rank_fields``: the value of its ``text`` field, as is;
* one rank field: that field's value, as is (so ``["text"]`` is the default, and ``["body"]`` judges
  the body alone, without a label);
* several rank fields: one ``name: value`` line per named field, in ``rank_fields`` order. Values are
  not escaped (no YAML quoting): the judge reads them as written.

A document that lacks some of the named fields is shown those it has: Cohere's own examples mix
objects with different keys. These are errors (400), since the judge would otherwise be shown nothing,
or a typo would be ignored without a word:

* an object with none of the fields to rank on (Cohere: "document does not have a 'snippet' or a
  'text' field that can be used for chunking and reranking");
* a rank field that no object document has (Cohere errors when no object has ``text`` by default);
* a rank field named twice;
* more documents than ``max_responses_per_item``, or a document whose judged text (its fields joined)
  is longer than ``max_response_chars``: both are checked before any text is built.

``rank_fields`` holds at most :data:`MAX_RANK_FIELDS` names (the schema's cap, 422 past it), so the
checks are linear in the body: no name is compared with every other, nor every document with every name
more than that cap allows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from server.serving.errors import invalid_request

DEFAULT_RANK_FIELD = "text"
MAX_RANK_FIELDS = 32  # Cohere publishes no cap; a ranking on more fields than this is no ranking we know of


def judged_texts(
    documents: Sequence[str | Mapping[str, str]],
    rank_fields: Sequence[str] | None,
    *,
    max_documents: int,
    max_chars: int,
) -> list[str]:
    """The text the GRM judges for each document, in the documents' order.

    Args:
        documents: the request's documents, strings or objects of string fields.
        rank_fields: the fields of object documents to rank on, in order; None for Cohere's default
            (the ``text`` field).
        max_documents: the most documents a call may rank (``max_responses_per_item``).
        max_chars: the most characters of one document's judged text (``max_response_chars``).

    Raises:
        APIError: 400 ``invalid_request`` for more than ``max_documents`` documents, a repeated rank
            field, a rank field that no object document has, an object document with none of the
            fields to rank on, or a judged text over ``max_chars`` characters.
    """
    if len(documents) > max_documents:
        raise invalid_request(
            f"{len(documents)} documents exceed the server limit max_responses_per_item = {max_documents}"
        )
    fields = list(rank_fields) if rank_fields is not None else [DEFAULT_RANK_FIELD]
    counts = Counter(fields)  # linear: the names are hashed once each
    repeated = sorted(f for f, n in counts.items() if n > 1)
    if repeated:
        raise invalid_request(f"rank_fields names {', '.join(map(repr, repeated))} more than once")
    objects = [d for d in documents if not isinstance(d, str)]
    if objects and rank_fields is not None:
        unused = [f for f in fields if not any(f in d for d in objects)]
        if unused:
            raise invalid_request(f"rank_fields {unused} are in none of the object documents; check their spelling")
    labelled = len(fields) > 1  # one rank field: its value as is; several: "name: value" lines
    texts = []
    for i, document in enumerate(documents):
        if isinstance(document, str):
            _check_size(i, len(document), max_chars, "")
            texts.append(document)
        else:
            shown = _shown(i, document, fields, rank_fields is None)
            _check_size(i, _length(document, shown, labelled), max_chars, " (its rank fields joined)")
            texts.append(_render(document, shown, labelled))  # built only once its size passed
    return texts


def _shown(index: int, document: Mapping[str, str], fields: list[str], default: bool) -> list[str]:
    """The fields of ``document`` the judge is shown, in ``fields`` order (the rank fields it has)."""
    present = [f for f in fields if f in document]
    if not present:
        if default:
            raise invalid_request(
                f"documents[{index}] is an object without a 'text' field; put the text to judge in 'text', "
                "or name the fields to rank on in rank_fields"
            )
        raise invalid_request(f"documents[{index}] has none of the rank_fields {fields}: there is nothing to judge")
    return present


def _check_size(index: int, size: int, max_chars: int, what: str) -> None:
    if size > max_chars:
        raise invalid_request(
            f"documents[{index}] is {size} characters to judge{what}, over the server limit "
            f"max_response_chars = {max_chars}"
        )


def _length(document: Mapping[str, str], shown: list[str], labelled: bool) -> int:
    """The length of :func:`_render`'s text, without building it."""
    if not labelled:
        return len(document[shown[0]])
    return sum(len(f) + 2 + len(document[f]) for f in shown) + len(shown) - 1


def _render(document: Mapping[str, str], shown: list[str], labelled: bool) -> str:
    if not labelled:
        return document[shown[0]]
    return "\n".join(f"{f}: {document[f]}" for f in shown)
