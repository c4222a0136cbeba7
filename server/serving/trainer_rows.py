"""RL trainers' rows as GRM items, and the items' results as the trainers' rewards.

OpenRLHF (``/get_reward``) sends rows of ``prompt + response`` with the prompt beside them; slime and
AReaL (``/v1/reward``) send one rollout's prompt and response. Either way:

* the prompt's chat markup is read back into plain turns when it is recognisably one template's
  (:mod:`server.serving.chat_markup`); the response then loses that template's own end tokens at its
  very end, and nothing else;
* a row's label is its reference answer when the judge has a slot for one (``--openrlhf-labels auto``,
  the default: under a judge without the slot labels are dropped, and counted, :func:`labels_ignored`);
  ``reference`` always uses them (a judge without the slot refuses the call, 400), ``ignore`` drops them;
* rows of the same conversation and label form one item, so they are judged together (and with other
  calls' rows of that item, :mod:`server.serving.grouping`);
* a row's reward is on ``--openrlhf-reward``'s scale; a row none of whose samples parsed gets 0.0 and
  is reported unscored. With adaptive k, ``raw`` is the k-normalised sum (items stop at different k).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from grm_client import labels as label_rule
from server.pipeline.aggregation import RewardMode, to_reward
from server.pipeline.domain import ItemResult, Message
from server.pipeline.judges import Scale
from server.serving.chat_markup import Markup, to_conversation
from server.serving.errors import invalid_request
from server.serving.validation import ItemOptions, reference_of_label

LabelMode = Literal["auto", "reference", "ignore"]


def uses_labels(mode: LabelMode, takes_reference: bool) -> bool:
    """Whether labels are reference answers: ``reference`` always, ``auto`` when the judge has the slot."""
    return mode == "reference" or (mode == "auto" and takes_reference)


def labels_ignored(labels: Sequence[object] | None, rows: int, mode: LabelMode, takes_reference: bool) -> list[bool]:
    """Per row, whether it carried a label that ``auto`` dropped because the judge has no reference slot
    (what the answers report and ``grm_labels_ignored_total`` counts). A null, blank or NaN label carries
    none; one that is no answer at all (a list) is counted too: it was not used either."""
    if mode != "auto" or takes_reference or labels is None:
        return [False] * rows
    return [_carries_answer(label) for label in labels]


def _carries_answer(label: object) -> bool:
    try:
        return label_rule.reference_of_label(label) is not None
    except ValueError:
        return True


@dataclass(frozen=True)
class RowRewards:
    """One reward per row, in the rows' order."""

    rewards: list[float]
    unscored: list[bool]
    group_sizes: list[int]
    k_used: list[int]  # samples its GRM group drew (adaptive k may stop before k)


def split_rows(queries: Sequence[str], prompts: Sequence[str]) -> list[str]:
    """Each OpenRLHF row's response: its query (prompt + response, as sent) minus its prompt.

    Raises:
        APIError: 400 when ``prompts`` has another length, or a prompt is not a prefix of its query.
    """
    if len(prompts) != len(queries):
        raise invalid_request(f"{len(queries)} queries but {len(prompts)} prompts")
    responses = []
    for i, (query, prompt) in enumerate(zip(queries, prompts, strict=True)):
        if not query.startswith(prompt):
            raise invalid_request(f"query {i} does not start with its prompt")
        responses.append(query[len(prompt) :])
    return responses


def references_of(labels: Sequence[object] | None, rows: int, use_labels: bool) -> list[str | None]:
    """Each row's reference answer: its label when labels are used and it has a non-blank one.

    Raises:
        APIError: 400 for labels of another length, or a label that is not a string or a number.
    """
    if labels is None or not use_labels:
        return [None] * rows
    if len(labels) != rows:
        raise invalid_request(f"{rows} queries but {len(labels)} labels")
    return [reference_of_label(label, f"label {i}") for i, label in enumerate(labels)]


def row_items(
    markup: Markup, prompts: Sequence[str], responses: Sequence[str], references: Sequence[str | None]
) -> tuple[list[ItemOptions], list[list[int]]]:
    """The items of some rows (one per conversation and reference) and each item's row indices."""
    groups: dict[tuple[tuple[Message, ...], str | None], list[int]] = {}
    texts: list[str] = []
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        messages, text = to_conversation(markup, prompt, response)
        texts.append(text)
        groups.setdefault((messages, references[i]), []).append(i)
    items = [
        ItemOptions(messages=messages, responses=tuple(texts[i] for i in rows), reference=reference)
        for (messages, reference), rows in groups.items()
    ]
    return items, list(groups.values())


def rollout_item(
    markup: Markup, prompt: str | Sequence[Message], response: str, label: object, *, use_labels: bool
) -> ItemOptions:
    """One rollout's item: a chat-templated prompt string is read back into turns; a list of turns
    must end with the user's; the label (checked after the prompt) is the reference when labels are used.

    Raises:
        APIError: 400 for turns that do not end with the user's, or a label that is no answer.
    """
    if isinstance(prompt, str):
        messages, text = to_conversation(markup, prompt, response)
    elif not prompt or prompt[-1].role != "user":
        raise invalid_request("prompt must be a string or a list of messages ending with the user's turn")
    else:
        messages, text = tuple(prompt), response
    reference = reference_of_label(label) if use_labels else None
    return ItemOptions(messages=messages, responses=(text,), reference=reference)


def is_adaptive(result: ItemResult) -> bool:
    """Whether adaptive k drew the item (its ``raw`` rewards are then k-normalised sums)."""
    return result.adaptive != "off"


def row_rewards(
    rows_of_items: Sequence[list[int]],
    results: Sequence[ItemResult],
    mode: RewardMode,
    scale: Scale,
    *,
    pairwise: bool = False,
) -> RowRewards:
    """The items' results scattered back to their rows, in ``mode`` on the judge's vote ``scale``
    (0.0 for an unscored row). ``raw`` rewards are k-normalised sums for adaptive items and for a
    ``pairwise`` judge, whose responses are judged in as many pairs as their pool gives them
    (:func:`~server.pipeline.aggregation.to_reward`)."""
    count = sum(len(rows) for rows in rows_of_items)
    out = RowRewards(rewards=[0.0] * count, unscored=[False] * count, group_sizes=[0] * count, k_used=[0] * count)
    for rows, result in zip(rows_of_items, results, strict=True):
        for row, score, size in zip(rows, result.responses, result.group_sizes, strict=True):
            value = to_reward(score, mode, scale=scale, normalized=pairwise or is_adaptive(result))
            out.rewards[row] = 0.0 if value is None else value
            out.unscored[row] = value is None
            out.group_sizes[row] = size
            out.k_used[row] = result.k_used
    return out
