"""Checks apart from execution: a request's items against the server's defaults and limits.

Every scoring route turns its wire format into :class:`ItemOptions` and asks the :class:`Validator`
for the pipeline's :class:`~server.pipeline.scoring.ScoreSpec`; every per-item limit is checked here,
once, for every route, before any work starts. Nothing here knows HTTP: a failed check raises the
400 of :mod:`server.serving.errors`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from grm_client import labels
from server.config import Settings
from server.pipeline.adaptive import AdaptiveOptions, StopRule
from server.pipeline.domain import Message, Votes
from server.pipeline.judges import Judge, soft_votes_problem, unsupported
from server.pipeline.scoring import ScoreSpec
from server.serving.errors import invalid_request


@dataclass(frozen=True)
class ItemOptions:
    """One item as a route received it; ``None`` means the server's default."""

    messages: tuple[Message, ...]
    responses: tuple[str, ...]
    k: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    k_meta: int | None = None
    seed: int | None = None
    principles: Sequence[str] | str | None = None  # a user rubric: a list of criteria, or one text
    reference: str | None = None  # a reference answer (OpenRLHF's label, verl's ground_truth)
    adaptive: StopRule | None = None  # adaptive k's stopping rule
    adaptive_epsilon: float | None = None  # the stderr rule's bound
    adaptive_delta: float | None = None  # the confident rule's bound
    k_min: int | None = None  # fewest samples per group before an adaptive stop
    votes: Votes | None = None  # hard or soft votes


class Validator:
    """Request -> :class:`ScoreSpec`, with the defaults and limits of ``settings``.

    Args:
        settings: the server's defaults (k, temperature, max_tokens, k_meta), limits and judge (an item
            whose principles or reference the judge has no slot for is refused, never judged without them).
        refuse_k_meta: whether a ``k_meta`` is refused now: the server is up and has no meta RM to
            filter votes with (until it is up, such a call gets the service's 503 instead).
        judge: the judge profile whose slots an item must fit (default: the one ``settings`` names).
    """

    def __init__(
        self, settings: Settings, *, refuse_k_meta: Callable[[], bool] = lambda: False, judge: Judge | None = None
    ) -> None:
        self.settings = settings
        self.refuse_k_meta = refuse_k_meta
        self.judge = judge if judge is not None else settings.judge_profile()

    def check_items(self, count: int) -> None:
        """Raises: APIError: 400 past ``max_items_per_batch``."""
        if count > self.settings.max_items_per_batch:
            raise invalid_request(
                f"{count} items exceed the server limit max_items_per_batch = {self.settings.max_items_per_batch}"
            )

    def resolve(self, item: ItemOptions) -> ScoreSpec:
        """Resolve an item's sampling choices against the server defaults and limits.

        Raises:
            APIError: 400 when a value exceeds its configured maximum, ``k_meta`` cannot apply, the
                judge has no slot (or no slot of that shape) for the item's principles or reference, or
                soft votes are asked of a judge whose verdicts have none.
        """
        s = self.settings
        k = item.k if item.k is not None else s.k
        temperature = item.temperature if item.temperature is not None else s.temperature
        max_tokens = item.max_tokens if item.max_tokens is not None else s.max_tokens
        if item.k_meta is not None:
            if item.k_meta > k:
                raise invalid_request(f"k_meta = {item.k_meta} exceeds k = {k}")
            if self.refuse_k_meta():
                raise invalid_request("k_meta was given but the server has no meta RM (start it with --meta-rm)")
        adaptive = self._adaptive(item, k)
        principles = (item.principles,) if isinstance(item.principles, str) else item.principles
        if principles is not None and not any(p.strip() for p in principles):
            raise invalid_request("principles must hold at least one non-blank criterion")
        if item.reference is not None and not item.reference.strip():
            raise invalid_request("reference must not be blank; leave it out to judge without one")
        rubric = tuple(p for p in principles if p.strip()) if principles is not None else None
        why = unsupported(
            self.judge, principles=rubric is not None, reference=item.reference is not None, rubric=rubric
        )
        if why is not None:
            raise invalid_request(why)
        votes = item.votes if item.votes is not None else s.votes
        if votes == "soft" and (no_soft := soft_votes_problem(self.judge)):
            raise invalid_request(f"votes 'soft': {no_soft}")
        conversation_chars = (
            sum(len(m.content) for m in item.messages)
            + sum(len(p) for p in principles or ())
            + len(item.reference or "")
        )
        checks = [
            (len(item.responses), s.max_responses_per_item, "responses per item", "max_responses_per_item"),
            (k, s.max_k, "k", "max_k"),
            (temperature, s.max_temperature, "temperature", "max_temperature"),
            (max_tokens, s.max_tokens_limit, "max_tokens", "max_tokens_limit"),
            (max(map(len, item.responses)), s.max_response_chars, "characters in a response", "max_response_chars"),
            (conversation_chars, s.max_conversation_chars, "conversation chars (with principles and reference)",
             "max_conversation_chars"),
        ]  # fmt: skip
        for value, limit, what, name in checks:
            if value > limit:
                raise invalid_request(f"{what} = {value} exceeds the server limit {name} = {limit}")
        return ScoreSpec(
            messages=item.messages,
            responses=item.responses,
            k=k,
            temperature=temperature,
            top_p=s.top_p,
            max_tokens=max_tokens,
            seed=item.seed,
            k_meta=item.k_meta if item.k_meta is not None else s.k_meta,
            principles=rubric,
            reference=item.reference,
            adaptive=adaptive,
            pairing=s.pairing,  # --pairing and --aggregation apply to every item of a pairwise judge
            aggregation=s.aggregation,
            votes=votes,
        )

    def _adaptive(self, item: ItemOptions, k: int) -> AdaptiveOptions:
        """The item's adaptive options: its own, else the server's (``k_min`` capped at ``k``).

        Raises:
            APIError: 400 for ``k_min`` above ``k``, or an option its rule does not use.
        """
        s = self.settings
        rule = item.adaptive if item.adaptive is not None else s.adaptive
        if item.k_min is not None and item.k_min > k:
            raise invalid_request(f"k_min = {item.k_min} exceeds k = {k}")
        if rule == "off" and item.k_min is not None:
            raise invalid_request("k_min applies only to adaptive k; set adaptive to 'rank', 'stderr' or 'confident'")
        if rule != "stderr" and item.adaptive_epsilon is not None:
            raise invalid_request(f"adaptive_epsilon applies only to adaptive 'stderr', not {rule!r}")
        if rule != "confident" and item.adaptive_delta is not None:
            raise invalid_request(f"adaptive_delta applies only to adaptive 'confident', not {rule!r}")
        if rule == "off":
            return AdaptiveOptions()
        epsilon = item.adaptive_epsilon if item.adaptive_epsilon is not None else s.stderr_epsilon()
        delta = item.adaptive_delta if item.adaptive_delta is not None else s.adaptive_delta
        k_min = item.k_min if item.k_min is not None else min(s.adaptive_k_min, k)
        return AdaptiveOptions(
            rule,
            epsilon if rule == "stderr" else AdaptiveOptions.epsilon,
            k_min,
            delta if rule == "confident" else AdaptiveOptions.delta,
        )


def reference_of_label(label: object, what: str = "label") -> str | None:
    """A trainer's label as the GRM's reference answer, by grm-client's rule
    (:func:`grm_client.labels.reference_of_label`: NaN and blank are none, ``3.0`` is ``"3"``).

    Raises:
        APIError: 400 for a label that is no answer (a list, an object, a boolean, an infinite number).
    """
    try:
        return labels.reference_of_label(label)
    except ValueError as exc:
        raise invalid_request(f"{what}: {exc}") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def refuse_lone_surrogates(body: object) -> None:
    """Refuse a parsed JSON body with a lone surrogate (``"\\ud800"``: valid JSON, but no Unicode text)
    in any string or key. The engine's tokenizer cannot encode one: it would fail the call with a 500,
    and every other call grouped with it.

    Raises:
        APIError: 400 naming the first such field by its path in the body (``items[0].responses[1]``).
    """
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # C speed for the common case: nothing to find
        return
    except (UnicodeEncodeError, RecursionError):
        pass  # a surrogate, or nested past the encoder's depth here (the walk below has no depth limit)
    found = _first_lone_surrogate(body)
    if found is not None:
        path, char = found
        raise invalid_request(
            f"{path} holds a lone surrogate (\\u{ord(char.group()):04x} at character {char.start()}), which is "
            "not Unicode text; send text as valid UTF-8 or with paired \\u escapes"
        )


def _first_lone_surrogate(body: object) -> tuple[str, re.Match[str]] | None:
    """The path of the first string or key of ``body`` that holds a surrogate (in document order), and
    where in it.

    Iterative, and each node records only its parent, so a deep or wide body costs time in proportion
    to its size."""
    links: list[tuple[int, str | int]] = [(-1, "")]  # node -> (its parent node, its key in the parent)
    stack: list[tuple[object, int]] = [(body, 0)]
    while stack:
        value, node = stack.pop()
        if isinstance(value, str):
            if char := _SURROGATE.search(value):
                return _path(links, node), char
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        children = []
        for key, item in items:
            links.append((node, key))
            if isinstance(key, str) and (char := _SURROGATE.search(key)):
                return f"a key of {_path(links, node)}", char
            children.append((item, len(links) - 1))
        stack.extend(reversed(children))
    return None


def _path(links: list[tuple[int, str | int]], node: int) -> str:
    parts: list[str] = []
    while node > 0:
        node, key = links[node]
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).lstrip(".") or "the body"
