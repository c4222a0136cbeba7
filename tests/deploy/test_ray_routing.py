"""Prompt-affine routing keys and the bounded-load consistent hashing, without a Ray cluster."""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from server.api.protocol import ScoreItem
from server.config import Settings
from server.serving.errors import APIError
from server.serving.validation import Validator
from tests.deploy.conftest import DEPLOY

RAY_APP = DEPLOY / "ray"
CHATML = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def routing() -> Iterator[ModuleType]:
    sys.path.insert(0, str(RAY_APP))
    try:
        import grm_ray_routing

        yield grm_ray_routing
    finally:
        sys.path.remove(str(RAY_APP))


def key(routing, path: str, body: dict, headers: dict | None = None, query: str = "") -> str:
    return routing.routing_key("POST", path, headers or {}, query, json.dumps(body).encode())


def row(q: str, answer: str, label: str | None = "Paris") -> dict:
    prompt = CHATML.format(q=q)
    return {"query": [prompt + answer + "<|im_end|>"], "prompts": [prompt], "labels": [label]}


def test_rollouts_of_one_prompt_share_a_key_and_other_prompts_or_callers_do_not(routing):
    same = {key(routing, "/get_reward", row("Capital of France?", a)) for a in ("Paris.", "Lyon.", "It is Paris.")}
    assert len(same) == 1 and "" not in same
    (k,) = same
    assert key(routing, "/get_reward", row("Capital of Spain?", "Madrid.")) != k
    assert key(routing, "/get_reward", row("Capital of France?", "Paris.", label="paris")) != k
    other_tenant = {"authorization": "Bearer tenant-b"}
    assert key(routing, "/get_reward", row("Capital of France?", "Paris."), other_tenant) != k
    assert key(routing, "/get_reward", row("Capital of France?", "Paris."), query="api_key=tenant-b") == key(
        routing, "/get_reward", row("Capital of France?", "Lyon."), other_tenant
    )  # the key in the URL is the same caller as the bearer header


def test_score_items_key_by_conversation_and_options_and_slime_by_prompt_and_label(routing):
    item = {"query": "2+2?", "responses": ["4"], "k": 4}
    assert key(routing, "/v1/score", item) == key(routing, "/v1/score", {**item, "responses": ["5"]})
    assert key(routing, "/v1/score", item) != key(routing, "/v1/score", {**item, "k": 8})
    assert key(routing, "/v1/score", {"items": [item, {**item, "query": "3+3?"}]}) == key(routing, "/v1/score", item)
    slime = {"prompt": CHATML.format(q="2+2?"), "response": "4", "label": "4"}
    assert key(routing, "/v1/reward", slime) == key(routing, "/v1/reward", {**slime, "response": "5"})
    assert key(routing, "/v1/reward", slime) != key(routing, "/v1/reward", {**slime, "label": "5"})


def test_labels_key_by_the_servers_label_rule(routing):
    slime = {"prompt": CHATML.format(q="2+2?"), "response": "4"}
    as_python_writes = lambda label: json.dumps({**slime, "label": label}).encode()  # noqa: E731 (NaN as a bare token)
    three = {routing.routing_key("POST", "/v1/reward", {}, "", as_python_writes(v)) for v in (3, 3.0, "3")}
    none = {routing.routing_key("POST", "/v1/reward", {}, "", as_python_writes(v)) for v in (None, float("nan"), " ")}
    assert len(three) == 1 and len(none) == 1 and three != none


def test_retries_share_a_key_and_unroutable_calls_have_none(routing):
    rerank = {"query": "q", "documents": ["a", "b"]}
    assert key(routing, "/v2/rerank", rerank) == key(routing, "/v2/rerank", dict(rerank))
    assert key(routing, "/v2/rerank", rerank) != key(routing, "/v2/rerank", {**rerank, "documents": ["b", "a"]})
    assert routing.routing_key("POST", "/v1/score", {}, "", b"not json") != ""  # a retry still meets its job
    assert routing.routing_key("GET", "/metrics", {}, "", b"") == ""
    assert routing.routing_key("POST", "/health/ready", {}, "", b"{}") == ""


REPLICAS = [f"replica-{i}" for i in range(8)]


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=40, unique=True),
    gone=st.sampled_from(REPLICAS),
)
def test_a_replica_that_goes_away_moves_only_its_own_keys(routing, keys, gone):
    left = [r for r in REPLICAS if r != gone]
    for k in keys:
        before, after = routing.ranking(k, REPLICAS), routing.ranking(k, left)
        assert after == [r for r in before if r != gone]  # the others keep their order
        if before[0] != gone:
            assert after[0] == before[0]


def test_bounded_load_sends_a_hot_keys_overflow_to_its_next_replica_and_spreads_many_keys(routing):
    idle = dict.fromkeys(REPLICAS, 0)
    first, second = routing.ranking("hot", REPLICAS)[:2]
    assert routing.bounded_choice("hot", idle)[0] == first
    busy = {**idle, first: 3}  # 3 in flight, mean with this call 0.5: the bound is 1 (no headroom)
    assert routing.bounded_choice("hot", busy, headroom=0)[:1] == [second]
    assert routing.bounded_choice("hot", busy)[:1] == [first]  # a GRPO group's rollouts stay together
    assert routing.bounded_choice("hot", {**idle, first: 20})[:1] == [second]  # bound: ceil(1.25 * 21 / 8) + 16 = 20
    # 64 prompts x 8 rollouts, sent one after another while all are in flight: no replica takes more
    # than load_factor times its share plus the headroom.
    inflight = dict(idle)
    for p in range(64):
        for _ in range(8):
            inflight[routing.bounded_choice(f"prompt-{p}", inflight)[0]] += 1
    assert max(inflight.values()) <= 1.25 * 64 + 1 + routing.DEFAULT_HEADROOM
    assert sum(inflight.values()) == 512
    # With no load a key always gets its own first replica, so rollouts of one prompt meet.
    assert Counter(routing.bounded_choice("prompt-0", idle)[0] for _ in range(8)) == Counter({first_of(routing): 8})


def first_of(routing) -> str:
    return routing.ranking("prompt-0", REPLICAS)[0]


def test_equal_requests_in_other_spellings_share_a_key(routing):
    """The server resolves these pairs to the same GRM prompt, so they must meet on one replica."""
    item = {"query": "2+2?", "responses": ["4"]}
    as_messages = {"messages": [{"role": "user", "content": "2+2?"}], "responses": ["5"]}
    assert key(routing, "/v1/score", item) == key(routing, "/v1/score", as_messages)
    assert key(routing, "/v1/score", item) == key(routing, "/v1/score", {**item, "k": None, "seed": None})
    assert key(routing, "/get_reward", row("q", "a", label=4)) == key(routing, "/get_reward", row("q", "b", label="4"))
    slime = {"prompt": "p", "response": "r"}
    assert key(routing, "/v1/reward", {**slime, "label": ""}) == key(routing, "/v1/reward", {**slime, "label": None})


def test_a_full_replica_spills_its_keys_to_their_next_replica(routing):
    idle = dict.fromkeys(REPLICAS, 0)
    first, second = routing.ranking("hot", REPLICAS)[:2]
    capacity = dict.fromkeys(REPLICAS, 2)
    assert routing.bounded_choice("hot", {**idle, first: 1}, capacity=capacity)[0] == first
    assert routing.bounded_choice("hot", {**idle, first: 2}, capacity=capacity)[0] == second


@pytest.mark.parametrize("path", sorted(["/v1/score", "/get_reward", "/v1/reward", "/v2/rerank"]))
def test_a_body_nested_past_the_parsers_limit_keys_by_its_digest(routing, path):
    """json.loads raises RecursionError (not ValueError) on it: the front must not answer a bare 500."""
    nested = b"[" * 100_000
    k = routing.routing_key("POST", path, {}, "", nested)
    assert k and k == routing.routing_key("POST", path, {}, "", nested)  # a retry meets its call
    assert k != routing.routing_key("POST", path, {}, "", b"{" * 100_000)


FIELDS = ["items", "query", "messages", "responses", "prompt", "prompts", "labels", "label", "k", "documents"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(sorted(["/v1/score", "/get_reward", "/v1/reward", "/v2/rerank"])), body=JSON)
def test_any_json_body_gets_a_key_and_never_raises(routing, path, body):
    raw = json.dumps(body).encode()
    assert routing.routing_key("POST", path, {}, "", raw) == routing.routing_key("POST", path, {}, "", raw) != ""


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=64))
def test_any_bytes_get_a_key_and_never_raise(routing, body):
    assert routing.routing_key("POST", "/v1/score", {"authorization": "Bearer x"}, "api_key=%ff", body) != ""


class ReplicaResultStub:
    """A replica's result as Ray hands it to the router: done callbacks run on a thread of Ray's, at
    once when the call has already completed."""

    def __init__(self) -> None:
        self.callbacks: list = []
        self.done = False

    def add_done_callback(self, callback) -> None:
        if self.done:
            threading.Thread(target=callback, args=(None,)).start()
        else:
            self.callbacks.append(callback)

    def complete(self) -> None:
        self.done = True
        for callback in self.callbacks:
            threading.Thread(target=callback, args=(None,)).start()


def books(router) -> tuple[int, int]:
    """(calls in flight over the replicas, calls the router still tracks)."""
    return sum(dict(router._inflight).values()), len(dict(router._owner))


async def test_a_call_answered_before_ray_reports_it_routed_is_still_counted_off(routing):
    """Ray calls on_request_completed when the result completes, and on_request_routed only after the
    replica's accept message: a call answered within milliseconds (a 422) arrives in that order.
    Counted on anyway, it stayed in flight for ever (issue #30, finding 8)."""
    from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID, RequestMetadata
    from ray.serve._private.request_router.common import PendingRequest

    from tests.api.conftest import wait_until

    deployment = DeploymentID("grm-serve", "grm")
    router = routing.PromptAffinityRouter(deployment_id=deployment, handle_source=DeploymentHandleSource.UNKNOWN)
    router.initialize_state()
    replica = ReplicaID("replica-a", deployment)

    def pending(request_id: str) -> PendingRequest:
        return PendingRequest(args=[], kwargs={}, metadata=RequestMetadata(request_id, request_id))

    quick, slow = ReplicaResultStub(), ReplicaResultStub()
    quick.complete()
    router.on_request_completed(replica, "quick")  # Ray's order for a quick answer
    router.on_request_routed(pending("quick"), replica, quick)
    router.on_request_routed(pending("slow"), replica, slow)
    await wait_until(lambda: books(router) == (1, 1), what="only the slow call in flight")
    slow.complete()
    router.on_request_completed(replica, "slow")
    await wait_until(lambda: books(router) == (0, 0), what="no call in flight")


def server_defaults(routing, **overrides):
    return routing.ServerDefaults.of(Settings(engine="fake", **overrides))


def test_labels_a_server_ignores_do_not_part_calls_it_groups(routing):
    """With --openrlhf-labels ignore the server drops labels, so rollouts of one prompt group whatever
    their labels say; with labels as references they do not (review of issue #30, finding 11)."""
    ignoring, reading = server_defaults(routing, openrlhf_labels="ignore"), server_defaults(routing)
    slime = {"prompt": CHATML.format(q="2+2?"), "response": "4"}
    for path, bodies in {
        "/v1/reward": [{**slime, "label": label} for label in ("a", "b", None)],
        "/get_reward": [row("2+2?", "4", label=label) for label in ("a", "b", None)],
    }.items():
        raw = [json.dumps(body).encode() for body in bodies]
        assert len({routing.routing_key("POST", path, {}, "", r, ignoring) for r in raw}) == 1
        assert len({routing.routing_key("POST", path, {}, "", r, reading) for r in raw}) == 3


def test_an_option_at_the_servers_default_keys_as_one_left_out(routing):
    defaults = server_defaults(routing)  # k = 8
    item = {"query": "q", "responses": ["x"]}

    def keyed(body):
        return routing.routing_key("POST", "/v1/score", {}, "", json.dumps(body).encode(), defaults)

    assert keyed(item) == keyed({**item, "k": 8, "temperature": 0.5, "adaptive": "off"})
    assert keyed(item) != keyed({**item, "k": 4})
    assert keyed({**item, "principles": "be brief"}) == keyed({**item, "principles": ["be brief", " "]})


OPTION_VALUES = {
    "k": [None, 8, 4],
    "temperature": [None, 0.5, 0.7, 1],
    "max_tokens": [None, 1024, 256],
    "adaptive": [None, "off", "rank", "stderr", "confident"],
    "adaptive_epsilon": [None, 0.5, 0.3],
    "adaptive_delta": [None, 0.05, 0.01, 0],
    "k_min": [None, 4, 2],
    "principles": [None, "be brief", ["be brief"], ["be brief", " "], ["be kind"]],
    "seed": [None, 1],
}
ABSENT = object()
options = st.fixed_dictionaries({name: st.sampled_from([ABSENT, *values]) for name, values in OPTION_VALUES.items()})


@settings(max_examples=600, deadline=None)
@given(first=options, second=options, spelled_as_messages=st.booleans())
def test_items_share_a_key_exactly_when_the_server_resolves_them_to_one_grm_prompt(
    routing, first, second, spelled_as_messages
):
    """The server groups items whose resolved spec (everything but the responses) is equal; the key
    must be equal for those, and apart otherwise (a merged key would pile unrelated calls on a replica)."""
    defaults, validator = server_defaults(routing), Validator(Settings(engine="fake"))

    def body(chosen: dict, response: str, as_messages: bool) -> dict:
        turn = {"messages": [{"role": "user", "content": "q"}]} if as_messages else {"query": "q"}
        return {**turn, "responses": [response], **{k: v for k, v in chosen.items() if v is not ABSENT}}

    bodies = [body(first, "x", False), body(second, "y", spelled_as_messages)]
    try:
        specs = [replace(validator.resolve(ScoreItem.model_validate(b).to_item()), responses=()) for b in bodies]
    except (APIError, ValidationError):
        return  # a call the server refuses: its key does not matter
    keys = [routing.routing_key("POST", "/v1/score", {}, "", json.dumps(b).encode(), defaults) for b in bodies]
    assert (keys[0] == keys[1]) == (specs[0] == specs[1])


def test_labels_key_as_the_judge_reads_them_under_auto(routing):
    """--openrlhf-labels auto (the default) reads labels as references only for a judge with the slot:
    under skywork-critic the server drops them, so the routing key must too."""
    bodies = [row("2+2?", "4", label=label) for label in ("a", "b", None)]
    raw = [json.dumps(body).encode() for body in bodies]
    for judge, keys in (("deepseek-grm", 3), ("skywork-critic", 1)):
        defaults = server_defaults(routing, judge=judge)
        assert len({routing.routing_key("POST", "/get_reward", {}, "", r, defaults) for r in raw}) == keys, judge
