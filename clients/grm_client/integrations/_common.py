"""Grouping completions by prompt and turning a judged group into floats (shared by integrations)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from grm_client._async_client import AsyncGRMClient
from grm_client._base import build_item
from grm_client._client import GRMClient
from grm_client._errors import GRMError
from grm_client._models import RewardMode, ScoreResult
from grm_client.labels import reference_of_label

Prompt = str | list[dict[str, Any]]
log = logging.getLogger("grm_client")

# Per client, whether the server's judge has a reference slot (asked once, from /v1/info).
_SLOT_ATTR = "_grm_judge_takes_reference"


def _takes_reference(info: dict[str, Any]) -> bool:
    """Whether ``/v1/info``'s judge reads a reference answer; a server that names no judge serves
    deepseek-grm, which does."""
    judge = info.get("judge")
    return bool(judge.get("takes_reference", True)) if isinstance(judge, dict) else True


def _note_dropped() -> None:
    log.warning(
        "grm-serve's judge has no slot for a reference answer: the integration judges without the dataset's "
        "references (as the trainer routes do under --openrlhf-labels auto)"
    )


def slotted_references(client: GRMClient, references: Sequence[str | None] | None) -> Sequence[str | None] | None:
    """``references``, or None when the server's judge has no reference slot (it would refuse them, 400):
    an integration's references come from the dataset, which a trainer cannot change per judge. The
    judge is asked once per client (``/v1/info``); an unreachable info route counts as a slot."""
    if references is None or all(r is None for r in references):
        return references
    if not hasattr(client, _SLOT_ATTR):
        try:
            setattr(client, _SLOT_ATTR, _takes_reference(client.info()))
        except GRMError:
            return references
        if not getattr(client, _SLOT_ATTR):
            _note_dropped()
    return references if getattr(client, _SLOT_ATTR) else None


async def slotted_references_async(
    client: AsyncGRMClient, references: Sequence[str | None] | None
) -> Sequence[str | None] | None:
    """:func:`slotted_references` for the async client."""
    if references is None or all(r is None for r in references):
        return references
    if not hasattr(client, _SLOT_ATTR):
        try:
            setattr(client, _SLOT_ATTR, _takes_reference(await client.info()))
        except GRMError:
            return references
        if not getattr(client, _SLOT_ATTR):
            _note_dropped()
    return references if getattr(client, _SLOT_ATTR) else None


def group_by_prompt(prompts: Sequence[Any], references: Sequence[str | None] | None = None) -> list[list[int]]:
    """Indices of equal prompts (and references), in first-seen order.

    GRPO's completions of one prompt are judged together; rows with different reference answers never are.
    """
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault((repr(p), references[i] if references is not None else None), []).append(i)
    return list(groups.values())


def as_reference(value: Any) -> str | None:
    """A reference answer from a dataset value, by the rule the server reads labels with
    (:func:`grm_client.labels.reference_of_label`): None, blank or NaN for none, ``3.0`` as ``"3"``.

    Raises:
        ValueError: for other types (a list or dict is no single answer; a bool is no answer), or an
            infinite number.
    """
    return reference_of_label(value)


def as_query(prompt: Prompt) -> str | list[dict[str, str]]:
    """A grm-serve query from a plain or conversational prompt (system turns kept, last turn the user's)."""
    if isinstance(prompt, str):
        return prompt
    messages = [{"role": str(m["role"]), "content": _text(m["content"])} for m in prompt]
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a conversational prompt must end with the user's turn")
    return messages


def as_response(completion: Any) -> str:
    """The text of a plain completion or of the last turn of a conversational one."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        return _text(completion[-1]["content"])
    raise ValueError(f"cannot read a completion of type {type(completion).__name__}")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: keep the text ones
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def rewards_for_groups(
    client: GRMClient,
    queries: Sequence[str | list[dict[str, str]]],
    responses: Sequence[str],
    *,
    reward: RewardMode,
    missing: float,
    options: dict[str, Any],
    references: Sequence[str | None] | None = None,
    prompts: Sequence[Any] | None = None,
) -> list[float]:
    """Judge the rows of each prompt (and reference) in one item, one batch call split by the client,
    and scatter the rewards back in the rows' order.

    Rows are grouped by ``prompts`` (the trainer's own, default ``queries``) and ``references`` with
    :func:`group_by_prompt`, so a group's rows always share their reference answer. References are
    dropped when the server's judge has no slot for them (:func:`slotted_references`).
    """
    references = slotted_references(client, references)
    groups = group_by_prompt(prompts if prompts is not None else queries, references)
    items = [
        build_item(
            queries[g[0]],
            [responses[i] for i in g],
            reference=references[g[0]] if references is not None else None,
            **options,
        )
        for g in groups
    ]
    results: list[ScoreResult] = client.score_batch(items)
    out = [missing] * len(responses)
    for g, result in zip(groups, results, strict=True):
        for i, value in zip(g, result.rewards(reward, missing=missing), strict=True):
            out[i] = float(value if value is not None else missing)
    return out


GRM_OPTIONS = ("k", "k_meta", "temperature", "max_tokens", "seed", "principles")


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The per-request GRM options an integration forwards, checked when it is built, not per call.

    Raises:
        ValueError: naming an option grm-serve does not know.
    """
    unknown = sorted(set(options) - set(GRM_OPTIONS))
    if unknown:
        raise ValueError(f"unknown GRM option(s) {', '.join(map(repr, unknown))}; known: {', '.join(GRM_OPTIONS)}")
    return options


def default_base_url() -> str:
    return os.environ.get("GRM_URL", "http://127.0.0.1:8000")


def default_api_key() -> str | None:
    """``$GRM_API_KEY`` (None when unset or empty): the key a grm-serve with ``GRM_API_KEYS`` wants."""
    return os.environ.get("GRM_API_KEY") or None


_lock = threading.Lock()
_sync_clients: dict[tuple[int, str, str | None], GRMClient] = {}


def shared_client(base_url: str, api_key: str | None = None) -> GRMClient:
    """One blocking client per process, address and API key (it is thread-safe).

    Keyed by process id too: a worker forked from a process that already had a client (AReaL's
    process pool) must not share its parent's open connections. Two keys never share a client.
    """
    key = (os.getpid(), base_url, api_key)
    with _lock:
        client = _sync_clients.get(key)
        if client is None:
            client = _sync_clients[key] = GRMClient(base_url=base_url, api_key=api_key)
        return client


@dataclass
class _LoopClients:
    """The clients of one event loop, and the generator that closes them when the loop shuts down."""

    clients: dict[tuple[str, str | None], AsyncGRMClient] = field(default_factory=dict)
    closer: AsyncGenerator[None, None] | None = None


_loops: dict[asyncio.AbstractEventLoop, _LoopClients] = {}


def loop_client(base_url: str, api_key: str | None = None) -> AsyncGRMClient:
    """One async client per running event loop, address and API key.

    An httpx async client belongs to the loop it first ran on, and trainers run their async reward
    functions on a loop of their own (TRL's daemon loop, each verl reward-loop worker's loop), so the
    connection pool is shared by every call on that loop and never crosses loops; two keys never share
    a client. A loop's clients are closed when it shuts down (``asyncio.run`` and ``asyncio.Runner``
    finalise async generators before closing the loop); those of a loop closed without that are
    closed at the next call here.
    """
    loop = asyncio.get_running_loop()
    with _lock:
        for stale in [known for known in _loops if known.is_closed()]:
            for abandoned in _loops.pop(stale).clients.values():
                _close_sockets(abandoned)
        entry = _loops.get(loop)
        if entry is None:
            entry = _loops[loop] = _LoopClients()
            entry.closer = _close_at_shutdown(loop)
            _park(entry.closer)
        client = entry.clients.get((base_url, api_key))
        if client is None:
            client = entry.clients[(base_url, api_key)] = AsyncGRMClient(base_url=base_url, api_key=api_key)
        return client


async def _close_at_shutdown(loop: asyncio.AbstractEventLoop) -> AsyncGenerator[None, None]:
    """Waits at its ``yield`` for the loop's life; the loop's ``shutdown_asyncgens`` finalises it, and
    it closes the loop's clients while the loop can still await their sockets' closing."""
    try:
        yield
    finally:
        with _lock:
            entry = _loops.pop(loop, None)
        if entry is not None:
            await asyncio.gather(*(c.aclose() for c in entry.clients.values()), return_exceptions=True)


def _park(agen: AsyncGenerator[None, None]) -> None:
    """Run ``agen`` to its ``yield`` now: its first step registers it with the running loop (the
    loop's async-generator hooks), which then finalises it in ``shutdown_asyncgens``."""
    step = agen.asend(None)
    try:
        step.send(None)
    except StopIteration:
        return
    raise RuntimeError("the closer awaited before its yield")  # pragma: no cover - its body awaits nothing first


def _close_sockets(client: AsyncGRMClient) -> None:
    """Close the pooled sockets of a client whose loop closed without shutting down its async generators.

    httpx closes a client only by awaiting, and nothing can be awaited on a closed loop; the asyncio
    transports that owned the sockets died with it. Left to the garbage collector, each socket would
    stay open (an ESTABLISHED connection on both ends) until a collection finds it. The path to the
    sockets is private to httpx, httpcore and asyncio: a version that moves it leaves them to the
    collector again, which tests/clients/test_shared_clients.py catches. (uvloop's ``close`` closes its
    sockets itself; its socket wrappers are left alone here.)
    """
    pool = getattr(client._http._transport, "_pool", None)  # httpx's AsyncHTTPTransport: httpcore's pool
    for connection in list(getattr(pool, "connections", ())):
        stream = getattr(getattr(connection, "_connection", None), "_network_stream", None)
        wrapped = stream.get_extra_info("socket") if stream is not None else None
        raw = getattr(wrapped, "_sock", wrapped)  # asyncio lends a TransportSocket around the socket
        if isinstance(raw, socket.socket):
            raw.close()


async def row_rewards(
    client: AsyncGRMClient,
    queries: Sequence[str | list[dict[str, str]]],
    responses: Sequence[str],
    *,
    reward: RewardMode,
    missing: float,
    options: dict[str, Any],
    references: Sequence[str | None] | None = None,
) -> list[float]:
    """Each row judged in its own concurrent ``/v1/score`` call; rewards in the rows' order.

    The server groups concurrent one-row calls that can share a GRM prompt (same conversation,
    reference and options; ``--group-window-s``), so the rows of one prompt are judged together, and so
    are rows of one prompt that reach it from different calls (another rank's share of a GRPO group,
    verl's per-sample calls). One row per call also means a retry repeats one row only. References are
    dropped when the server's judge has no slot for them (:func:`slotted_references_async`).
    """
    references = await slotted_references_async(client, references)

    async def one(i: int) -> float:
        reference = references[i] if references is not None else None
        result = await client.score(queries[i], [responses[i]], reference=reference, **options)
        (value,) = result.rewards(reward, missing=missing)
        return float(value if value is not None else missing)

    return list(await asyncio.gather(*(one(i) for i in range(len(responses)))))
