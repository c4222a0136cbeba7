"""An item to score with every choice resolved (:class:`ScoreSpec`), and how items rank together (:class:`Linked`)."""

from __future__ import annotations

from dataclasses import dataclass

from server.pipeline.adaptive import AdaptiveOptions
from server.pipeline.domain import Message, Votes
from server.pipeline.judges import Aggregation, Pairing

NOT_ADAPTIVE = AdaptiveOptions()


@dataclass(frozen=True)
class ScoreSpec:
    """One item to score, with every sampling choice already resolved."""

    messages: tuple[Message, ...]
    responses: tuple[str, ...]
    k: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None = None
    k_meta: int | None = None  # voting samples per group when a meta RM is set (default k // 2)
    principles: tuple[str, ...] | None = None  # a user rubric: judge by these instead of the GRM's own
    reference: str | None = None  # a reference answer: judge correctness against it
    tenant: str = ""  # whose work it is (the engine's work gate serves tenants fairly)
    adaptive: AdaptiveOptions = NOT_ADAPTIVE  # when the item may stop before k samples
    pairing: Pairing = "circular"  # pairwise judges: which pairs of a pool are judged
    aggregation: Aggregation = "mean"  # pairwise judges: how a verdict becomes votes
    votes: Votes = "hard"  # what a sample votes with: the scores it wrote, or soft votes (their expectations)


@dataclass(frozen=True)
class Linked:
    """How several items' responses form one ranking for the ``rank`` rule: a rerank's groups, whose
    documents are ranked together (the ``top_n`` best in order, or the whole order)."""

    documents: tuple[tuple[int, ...], ...]  # per item, the document number of each of its responses
    n_documents: int
    anchored: bool = False  # document 0 is judged in every group and calibrates them
    top_n: int | None = None
