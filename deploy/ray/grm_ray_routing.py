"""Prompt-affine routing for grm-serve on Ray Serve: calls that can share work meet on one replica.

Grouping across calls and dedup of retries live in each replica's process, so a prompt's rollouts
(and a retry of a call) must reach the replica that holds the others. Ray's HTTP proxy streams the
body to the replica only after routing, so no router can see the prompt there. The app therefore has
a thin front deployment (``grm_ray_app.GRMFront``) that reads the body, computes
:func:`routing_key`, and calls the grm-serve deployment through a handle carrying the key as its
multiplexed model id (Ray's handle-level routing key: its routing loop hands a replica found for a
key to a waiting request with the same key, where a keyword argument would be lost to its FIFO
matching); this module's :class:`PromptAffinityRouter` (Ray Serve's public ``RequestRouter`` API)
sends each key to its replica:

* **Consistent hashing** (rendezvous: each replica's score is a hash of key and replica id; the
  highest wins). A replica that dies moves only its own keys; a new one takes a share from each.
* **Bounded load** (Mirrokni, Thorup and Zadimoghaddam, "Consistent hashing with bounded loads"):
  a replica is skipped while it holds ``load_factor`` times the mean of the calls this router has in
  flight, plus ``headroom`` calls, so one hot prompt cannot pile every call onto one replica; the next
  replica in the key's ranking takes the overflow, the same one for every call of that key. The
  headroom keeps a GRPO group's rollouts together when few calls are in flight (at the start of a
  burst the mean is near 0, and a bound of ``load_factor`` times it alone would split every group).
* A replica is also passed over once it holds as many of this router's calls as it accepts at once
  (``max_ongoing_requests``), so a hot prompt spills to its next replica instead of waiting.
* Calls with no affinity (GETs) get a key of their own from the front, so they spread like random
  keys and Ray's routing loop never gives them a replica found for a keyed call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ray.serve._private.request_router.pow_2_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import PendingRequest, ReplicaID, ReplicaResult, RunningReplica

from grm_client.labels import reference_of_label

# Routes whose calls can share a job (dedup) or a GRM prompt (grouping).
SCORING_PATHS = frozenset({"/v1/score", "/get_reward", "/v1/reward", "/v1/rerank", "/v2/rerank", "/rerank"})
DEFAULT_LOAD_FACTOR = 1.25
DEFAULT_HEADROOM = 16  # calls: a GRPO group of up to 16 rollouts always fits its replica


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def tenant_of(headers: Mapping[str, str], query: str) -> str:
    """The caller as grm-serve scopes it: its API key (bearer header, or ``?api_key=``), digested."""
    auth = headers.get("authorization", "")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not key:
        key = (parse_qs(query).get("api_key") or [""])[0]
    return _digest("tenant", key)[:16] if key else ""


@dataclass(frozen=True)
class ServerDefaults:
    """What the replicas do with what a call leaves out: the settings they run with, as far as they
    decide which calls share a GRM prompt. None (the default everywhere): nothing is assumed, and an
    option sent at its default keys apart from one left out."""

    k: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    k_meta: int | None = None
    adaptive: str | None = None
    adaptive_epsilon: float | None = None
    adaptive_delta: float | None = None
    adaptive_k_min: int | None = None
    use_labels: bool = True  # labels are references (--openrlhf-labels reference, or auto with a judge that takes one)

    @classmethod
    def of(cls, settings: Any) -> ServerDefaults:
        """The defaults of grm-serve's ``Settings`` (read by name: this module does not import the server)."""
        return cls(
            k=settings.k,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            k_meta=settings.k_meta,
            adaptive=settings.adaptive,
            adaptive_epsilon=settings.stderr_epsilon(),  # --adaptive-epsilon, or its share of the vote scale
            adaptive_delta=settings.adaptive_delta,
            adaptive_k_min=settings.adaptive_k_min,
            # server.serving.trainer_rows.uses_labels: auto reads labels when the judge has a reference slot
            use_labels=settings.openrlhf_labels == "reference"
            or (settings.openrlhf_labels == "auto" and settings.judge_profile().takes_reference),
        )


NO_DEFAULTS = ServerDefaults()


def _label(value: Any, defaults: ServerDefaults) -> Any:
    """A label as the server reads it (grm-client's rule: ``3.0`` is ``"3"``, NaN and blank are none;
    none at all when the server ignores labels); a label the server refuses keys as itself (that call
    gets its 400 wherever it lands)."""
    if not defaults.use_labels:
        return None
    try:
        return reference_of_label(value)
    except ValueError:
        return repr(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _options(part: dict[str, Any], defaults: ServerDefaults) -> dict[str, Any]:
    """A ``/v1/score`` item's options as the server resolves them: one equal to the server's default is
    left out, a float option sent as an integer is its float, a single principle is a list of one and
    blank principles are dropped. Values the server refuses stay as sent (the call gets its 400)."""
    k = part.get("k", defaults.k)
    k_min = min(defaults.adaptive_k_min, k) if defaults.adaptive_k_min is not None and _number(k) else None
    resolved = {
        "k": defaults.k,
        "temperature": defaults.temperature,
        "max_tokens": defaults.max_tokens,
        "k_meta": defaults.k_meta,
        "adaptive": defaults.adaptive,
        "adaptive_epsilon": defaults.adaptive_epsilon,
        "adaptive_delta": defaults.adaptive_delta,
        "k_min": k_min,
    }
    for name, default in resolved.items():
        value = part.get(name)
        if default is not None and (_number(value) or isinstance(value, str)) and value == default:
            del part[name]
    for name in ("temperature", "adaptive_epsilon", "adaptive_delta"):
        if isinstance(part.get(name), int) and _number(part[name]):
            part[name] = float(part[name])
    principles = part.get("principles")
    if isinstance(principles, str):
        principles = [principles]
    if isinstance(principles, list) and all(isinstance(p, str) for p in principles):
        kept = [p for p in principles if p.strip()]
        if kept:
            part["principles"] = kept
    return part


def _prompt_of(path: str, body: Any, defaults: ServerDefaults) -> Any:
    """What calls that may share a GRM prompt have in common, per route (None: use the whole body).

    Written the way the server resolves it, so equal requests in other spellings (a ``query`` or the
    same one-turn ``messages``, an option sent as null, left out or at the server's default, a label 4
    or "4", or any label when the server ignores them) meet too. Retries carry the same body, so they
    get the same key whatever this returns.
    """
    if not isinstance(body, dict):
        return None
    if path == "/get_reward":  # OpenRLHF: one row per call; its prompt and label
        prompts, labels = body.get("prompts"), body.get("labels")
        if isinstance(prompts, list) and prompts:
            return [prompts[0], _label(labels[0], defaults) if isinstance(labels, list) and labels else None]
        return None
    if path == "/v1/reward":  # slime, AReaL
        return [body.get("prompt"), _label(body.get("label"), defaults)]
    if path == "/v1/score":  # one item (grm-client's one-row calls), or a batch by its first item
        item = body["items"][0] if isinstance(body.get("items"), list) and body["items"] else body
        if not isinstance(item, dict) or "responses" not in item:
            return None
        part = {k: v for k, v in item.items() if k not in ("responses", "return_samples") and v is not None}
        if isinstance(part.get("query"), str):
            part["messages"] = [{"role": "user", "content": part.pop("query")}]
        return _options(part, defaults)
    return None  # rerank calls are never grouped across calls: only identical bodies share (dedup)


def routing_key(
    method: str,
    path: str,
    headers: Mapping[str, str],
    query: str,
    body: bytes,
    defaults: ServerDefaults = NO_DEFAULTS,
) -> str:
    """The replica affinity of a call: equal for calls that can share a GRM prompt (same caller, route
    and conversation, reference and options, as replicas with ``defaults`` resolve them) and for
    retries of one call; "" for no affinity.

    Never raises: a body it cannot read (not JSON, nested past Python's recursion limit, an odd shape)
    keys by its digest, so a retry still meets its call, and the replica answers it as grm-serve would
    (400 ``invalid_request``)."""
    if method != "POST" or path not in SCORING_PATHS:
        return ""
    tenant = tenant_of(headers, query)
    try:
        prompt = _prompt_of(path, json.loads(body), defaults)
        if prompt is not None:
            return _digest(tenant, path, prompt)
    except Exception:  # e.g. b"[" * 100000 is a RecursionError in json.loads, not a ValueError
        pass
    return _digest(tenant, path, hashlib.sha256(body).hexdigest())


def ranking(key: str, replicas: Sequence[str]) -> list[str]:
    """``replicas`` in the key's rendezvous order: the same order wherever it is computed, and
    removing a replica leaves the others' relative order unchanged."""
    return sorted(replicas, key=lambda r: hashlib.sha256(f"{key}|{r}".encode()).digest(), reverse=True)


def bounded_choice(
    key: str,
    inflight: Mapping[str, int],
    load_factor: float = DEFAULT_LOAD_FACTOR,
    headroom: int = DEFAULT_HEADROOM,
    capacity: Mapping[str, int] | None = None,
) -> list[str]:
    """The replicas for ``key`` in preference order: its ranking, the replicas at their load bound
    (``load_factor`` times the mean in-flight calls, counting this one, rounded up, plus ``headroom``;
    at most a replica's ``capacity``, the calls it accepts at once) moved last."""
    order = ranking(key, list(inflight))
    if not order:
        return []
    bound = math.ceil(load_factor * (sum(inflight.values()) + 1) / len(order)) + headroom

    def full(r: str) -> bool:
        return inflight[r] >= min(bound, (capacity or {}).get(r, bound))

    return [r for r in order if not full(r)] + [r for r in order if full(r)]


# The affinity routers of this process (one per handle to grm-serve), read by router_state.
LIVE_ROUTERS: weakref.WeakSet[Any] = weakref.WeakSet()


class PromptAffinityRouter(PowerOfTwoChoicesRequestRouter):
    """Ray Serve request router: consistent hashing with bounded load on a handle call's routing key
    (its multiplexed model id); the power of two choices for calls without one."""

    def initialize_state(
        self, load_factor: float = DEFAULT_LOAD_FACTOR, headroom: int = DEFAULT_HEADROOM, **kwargs: Any
    ) -> None:
        super().initialize_state(**kwargs)
        self.load_factor = load_factor
        self.headroom = headroom
        self._inflight: dict[ReplicaID, int] = {}
        self._owner: dict[int, ReplicaID] = {}  # each call in flight -> the replica it was sent to
        self._calls = itertools.count()
        self._register()

    def _register(self) -> None:
        """Join :data:`LIVE_ROUTERS` of the module this process imported: Ray ships this class by value
        (with a copy of this module's globals), so the copy's own globals are not where
        :func:`router_state` looks."""
        try:
            import grm_ray_routing
        except ImportError:  # a process without deploy/ray on its path (a user's own handle): not read
            return
        grm_ray_routing.LIVE_ROUTERS.add(self)

    @staticmethod
    def _key(pending_request: PendingRequest | None) -> str:
        return pending_request.metadata.multiplexed_model_id if pending_request is not None else ""

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        key = self._key(pending_request)
        if not key or not candidate_replicas:
            return await super().choose_replicas(candidate_replicas, pending_request)
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        inflight = {rid: self._inflight.get(r.replica_id, 0) for rid, r in by_id.items()}
        capacity = {rid: r.max_ongoing_requests for rid, r in by_id.items()}
        # One replica, not the whole ranking: when the replica is slow to answer Ray's queue-length
        # probe (a busy host), Ray would take the next rank and split the key's calls; with one rank
        # it asks again (with backoff) and the key stays put. The load bound still moves a hot key on.
        (first, *_) = bounded_choice(key, inflight, self.load_factor, self.headroom, capacity)
        return [[by_id[first]]]

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: ReplicaResult) -> None:
        super().on_request_routed(pending_request, replica_id, result)
        self._inflight[replica_id] = self._inflight.get(replica_id, 0) + 1
        call = next(self._calls)
        self._owner[call] = replica_id
        # Counted off by this result's own completion, not by Ray's on_request_completed: Ray calls
        # that when the result completes, which for a call answered within milliseconds (a 4xx) can
        # come before on_request_routed (Ray first awaits the replica's accept message), so such a
        # call was never counted off, its replica looked busier with every burst, and the load bound
        # moved keys off it (issue #30). A done callback fires once, even when added after the
        # result completed.
        loop = asyncio.get_running_loop()  # the router's loop; the callback comes on Ray's threads

        def done(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the router is gone too
                loop.call_soon_threadsafe(self._completed, call)

        result.add_done_callback(done)

    def _completed(self, call: int) -> None:
        replica_id = self._owner.pop(call, None)
        if replica_id is not None and self._inflight.get(replica_id, 0) > 0:
            self._inflight[replica_id] -= 1

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._inflight.pop(replica_id, None)


def router_state() -> dict[str, Any]:
    """What this process's affinity routers count: calls in flight per replica (``inflight``, by
    replica id) and calls whose completion they still wait for (``tracked``). Both return to zero
    once every call has ended, however it ended; tests read them through ``GRMFront.router_state``.

    The routers run on Ray's router thread: each dict is copied whole (one C-level copy under the GIL).
    """
    inflight: dict[str, int] = {}
    tracked = 0
    routers = list(LIVE_ROUTERS)
    for router in routers:
        for replica, n in dict(router._inflight).items():
            inflight[replica.unique_id] = inflight.get(replica.unique_id, 0) + n
        tracked += len(dict(router._owner))
    return {"routers": len(routers), "inflight": inflight, "tracked": tracked}
