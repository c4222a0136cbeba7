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
* a rank field named twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from server.serving.errors import invalid_request

DEFAULT_RANK_FIELD = "text"


def judged_texts(documents: Sequence[str | Mapping[str, str]], rank_fields: Sequence[str] | None) -> list[str]:
    """The text the GRM judges for each document, in the documents' order.

    Args:
        documents: the request's documents, strings or objects of string fields.
        rank_fields: the fields of object documents to rank on, in order; None for Cohere's default
            (the ``text`` field).

    Raises:
        APIError: 400 ``invalid_request`` for a repeated rank field, a rank field that no object
            document has, or an object document with none of the fields to rank on.
    """
    fields = list(rank_fields) if rank_fields is not None else [DEFAULT_RANK_FIELD]
    repeated = sorted({f for f in fields if fields.count(f) > 1})
    if repeated:
        raise invalid_request(f"rank_fields names {', '.join(map(repr, repeated))} more than once")
    objects = [d for d in documents if not isinstance(d, str)]
    if objects and rank_fields is not None:
        unused = [f for f in fields if not any(f in d for d in objects)]
        if unused:
            raise invalid_request(f"rank_fields {unused} are in none of the object documents; check their spelling")
    return [d if isinstance(d, str) else _render(i, d, fields, rank_fields is None) for i, d in enumerate(documents)]


def _render(index: int, document: Mapping[str, str], fields: list[str], default: bool) -> str:
    present = [f for f in fields if f in document]
    if not present:
        if default:
            raise invalid_request(
                f"documents[{index}] is an object without a 'text' field; put the text to judge in 'text', "
                "or name the fields to rank on in rank_fields"
            )
        raise invalid_request(f"documents[{index}] has none of the rank_fields {fields}: there is nothing to judge")
    if len(fields) == 1:
        return document[present[0]]
    return "\n".join(f"{f}: {document[f]}" for f in present)
