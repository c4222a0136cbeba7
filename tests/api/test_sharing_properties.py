"""Property: sharing work between calls (dedup, grouping) never changes what a call gets.

Hypothesis draws a scenario: the server's sharing settings (grouping on or off, the dedup cache's
bounds, an engine context that some groups overflow, its default rule of adaptive k and votes) and 2 to
9 calls from two tenants, each with a route, a body (from pools with equal bodies across calls and
across tenants; hard or soft votes among its options), an Idempotency-Key (none, or one of two, so keys
are reused with the same and with other bodies), a short or a long deadline, a start time, and perhaps a
disconnect. The calls run concurrently on the real app (raw ASGI, so a client can hang up mid-call) with
a deterministic fake judge: its vote for a response depends only on that response's text, so grouping
may not change it (nor its soft vote: the fake's logprobs at a score depend only on that score's own
tokens), and its critique quotes every response it was shown, so a sample that saw another call's or
tenant's response shows it.

Invariants:
* every call that stayed connected gets exactly what its body gets alone on a fresh server without
  sharing (same status; same scores and number of rows), or an error of its own making: 504 (or a
  429 at once, the queue being longer than it) with a short deadline, 422 ``idempotency_key_reused``
  after reusing its own key with another body;
* no answer carries another tenant's text, and no GRM prompt shows a response its tenant did not send
  (a tenant that repeats the other's body sends that tenant's texts itself, and may be shown them: the
  first version of this check refused any prompt showing both tenants' marks, which such a repeat,
  grouped with the tenant's own rows, does legitimately);
* afterwards no job, waiter, collecting or judged batch, admission slot, engine request or task is
  left, and the dedup cache is within its entry and byte bounds.

The number of cases is ``GRM_SHARING_EXAMPLES`` (default 300, derandomised so CI is repeatable).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from server.api.middleware import tenant_of
from server.app import build_app
from server.config import Settings
from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from server.pipeline.domain import Message
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template
from tests.api.conftest import post_scope, wait_until

EXAMPLES = int(os.environ.get("GRM_SHARING_EXAMPLES", "300"))
KEYS = {"alpha": "key-alpha", "beta": "key-beta"}
LINGER_S = 0.05
SHORT_DEADLINE_S = 0.03
CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def vote_of(response: str) -> int:
    """The fake judge's vote: a function of the response's own text only."""
    return 1 + sum(map(ord, response)) % 10


def quoting_judge(request: GenerationRequest) -> list[str]:
    shown = shown_responses(request.prompt)
    text = (
        "Specific Criteria: the fake judge's own.\n"
        f"Analysis: judged {' | '.join(shown)}\n"
        f"Scores: \\boxed{{{', '.join(str(vote_of(r)) for r in shown)}}}"
    )
    return [text] * request.n


# ---- bodies -------------------------------------------------------------------------------------

QUERIES = ("Name a colour.", "Summarise the plot.")


def texts_of(tenant: str | None) -> list[str]:
    """Responses: shared ones (no tenant) or marked with the tenant's name; one long one per pool."""
    mark = f" [{tenant}]" if tenant else ""
    short = [f"red{mark}", f"a deep ocean blue{mark}", f"green, like grass{mark}"]
    return [*short, *short, "long " * 60 + mark]  # the long one a seventh of the time


@st.composite
def bodies(draw: st.DrawFn, tenant: str) -> tuple[str, bytes]:
    """A (route, body) of this tenant: from its own pool or the pool both tenants share."""
    owner = draw(st.sampled_from([tenant, None]))
    texts = texts_of(owner)
    query = draw(st.sampled_from([QUERIES[0], QUERIES[0], QUERIES[1]]))  # mostly one prompt: rows can group
    route = draw(st.sampled_from(["/v1/score", "/get_reward", "/v1/rerank"]))
    if route == "/get_reward":
        rows = draw(st.lists(st.sampled_from(texts), min_size=1, max_size=2))
        prompt = CHATML.format(query)
        body: dict[str, Any] = {"query": [prompt + r + "<|im_end|>" for r in rows], "prompts": [prompt] * len(rows)}
        if draw(st.integers(0, 3)) == 0:
            body["votes"] = draw(st.sampled_from(["hard", "soft"]))
    elif route == "/v1/rerank":
        docs = draw(st.lists(st.sampled_from(texts), min_size=2, max_size=5))
        body = {"query": query, "documents": docs, "k": draw(st.sampled_from([1, 2]))}
        if draw(st.integers(0, 3)) == 0:
            body["adaptive"] = draw(st.sampled_from(["rank", "stderr", "confident", "off"]))
        if draw(st.integers(0, 3)) == 0:
            body["votes"] = draw(st.sampled_from(["hard", "soft"]))
    else:
        body = {
            "query": query,
            "responses": draw(st.lists(st.sampled_from(texts), min_size=1, max_size=3)),
            "k": draw(st.sampled_from([2, 2, 1])),  # k=2 is /get_reward's too: their rows can group
        }
        if draw(st.integers(0, 3)) == 0:
            body["return_samples"] = True
        if draw(st.integers(0, 5)) == 0:
            body["seed"] = 7
        if draw(st.integers(0, 3)) == 0:
            body["adaptive"] = draw(st.sampled_from(["rank", "stderr", "confident", "off"]))
        if draw(st.integers(0, 3)) == 0:
            body["votes"] = draw(st.sampled_from(["hard", "soft"]))
    return route, json.dumps(body).encode()


@dataclass(frozen=True)
class Call:
    tenant: str
    route: str
    body: bytes
    key: str | None
    short_deadline: bool
    start_s: float
    disconnect_s: float | None


@st.composite
def calls(draw: st.DrawFn) -> Call:
    tenant = draw(st.sampled_from(["alpha", "alpha", "beta"]))
    route, body = draw(bodies(tenant))
    return Call(
        tenant=tenant,
        route=route,
        body=body,
        key=draw(st.sampled_from([None, None, "job-1", "job-2"])),
        short_deadline=draw(st.integers(0, 4)) == 0,
        start_s=draw(st.sampled_from([0.0, 0.0, 0.005, 0.02, 0.04, 0.15])),  # 0.15: after most jobs finished
        disconnect_s=draw(st.sampled_from([None] * 7 + [0.0, 0.01, 0.03])),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> list[Call]:
    """2 to 9 calls; a third of them repeat an earlier call's body (a retry, or the other tenant's
    identical request), with a key of their own choosing and their own timing."""
    scenario = [draw(calls())]
    for _ in range(draw(st.integers(1, 8))):
        call = draw(calls())
        if draw(st.integers(0, 2)) == 0:
            earlier = draw(st.sampled_from(scenario))
            tenant = draw(st.sampled_from([earlier.tenant, earlier.tenant, call.tenant]))
            call = replace(call, tenant=tenant, route=earlier.route, body=earlier.body)
            if draw(st.booleans()):
                call = replace(call, key=earlier.key)
        scenario.append(call)
    return scenario


@dataclass(frozen=True)
class Server:
    group_window_s: float
    engine_delay_s: float
    context: int | None  # characters of a GRM prompt the fake engine accepts
    cache_entries: int
    cache_mib: float
    adaptive: str  # the server's default rule of adaptive k
    votes: str = "hard"  # the server's default votes

    def settings(self, sharing: bool = True) -> Settings:
        return Settings(
            engine="fake",
            api_keys=",".join(KEYS.values()),
            k=2,
            group_window_s=self.group_window_s if sharing else 0,
            dedup_identical_requests=sharing,
            idempotency_ttl_s=60 if sharing else 0,
            idempotency_cache_size=self.cache_entries,
            idempotency_cache_mib=self.cache_mib,
            idempotency_linger_s=LINGER_S,
            adaptive=self.adaptive,
            adaptive_k_min=1,
            votes=self.votes,
        )


def prompt_chars(n_short: int) -> int:
    return len(get_template(DEFAULT_TEMPLATE).render([Message("user", QUERIES[1])], ["a deep ocean blue"] * n_short))


servers = st.builds(
    Server,
    group_window_s=st.sampled_from([0.0, 0.05, 0.05]),
    engine_delay_s=st.sampled_from([0.0, 0.01, 0.03]),
    # None, or a context two short responses fit and four do not (the long one never fits with others).
    context=st.sampled_from([None, None, prompt_chars(3)]),
    cache_entries=st.sampled_from([1, 3, 64]),
    cache_mib=st.sampled_from([0.02, 64.0]),  # 0.02 MiB holds only a few results
    adaptive=st.sampled_from(["off", "off", "rank", "stderr", "confident"]),
    votes=st.sampled_from(["hard", "hard", "soft"]),
)


# ---- driving the app over raw ASGI ----------------------------------------------------------------


async def asgi_call(app: Any, call: Call, deadline: str | None) -> tuple[int, bytes] | None:
    """POST ``call`` to ``app``; None when the client hung up first (it hears nothing)."""
    headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {KEYS[call.tenant]}".encode())]
    if call.key:
        headers.append((b"idempotency-key", call.key.encode()))
    if deadline:
        headers.append((b"x-request-timeout", deadline.encode()))
    scope = post_scope(call.route, headers)
    gone = asyncio.Event()
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": call.body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                gone.set()

    await asyncio.sleep(call.start_s)
    handler = asyncio.ensure_future(app(scope, receive, send))
    if call.disconnect_s is not None:
        await asyncio.sleep(call.disconnect_s)
        if not handler.done():
            gone.set()
            await handler
            return None
    await handler
    return status, b"".join(chunks)


def essence(route: str, status: int, body: bytes) -> Any:
    """What a call's answer must share with its body's answer alone: status and scores, not usage or timing.

    With adaptive k, how many samples a GRM prompt draws depends on every response in it, other calls'
    grouped rows included; so for adaptive answers only what does not count samples is compared (the
    means, relevance, unit rewards), which the judge's fixed votes make equal. The rule's promise for the
    call's own responses (their order, their means' precision) then holds as it does alone.
    """
    data = json.loads(body)
    if status != 200:
        return status, data["error"]["type"]
    if route == "/get_reward":
        return status, data["rewards"], data["extra_logs"]["grm_unscored"], data.get("votes")
    if route == "/v1/rerank":
        adaptive = any(g["stop_reason"] != "off" for g in data["meta"]["grm"]["groups"])
        return (
            status,
            data["meta"]["grm"]["votes"],
            [
                (r["index"], r["relevance_score"], r.get("mean_score"), None if adaptive else r["votes"])
                for r in data["results"]
            ],
        )
    if data["stop_reason"] != "off":
        rows = [(r["index"], r["mean_score"], r["normalized_score"], r["status"]) for r in data["responses"]]
        return status, rows, data["k"], data["votes"]
    rows = [(r["index"], r["score"], r["mean_score"], r["votes"], r["status"]) for r in data["responses"]]
    return status, rows, data["k"], data["valid_samples"], data["total_samples"], data["votes"]


async def alone(server: Server, call: Call) -> Any:
    """The call's answer on a fresh server without sharing, no deadline and no disconnect."""
    engine = FakeEngine(quoting_judge, max_model_len=server.context)
    app = build_app(server.settings(sharing=False), engine=engine)
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready(timeout=10)
        answer = await asgi_call(app, Call(call.tenant, call.route, call.body, None, False, 0.0, None), None)
    assert answer is not None
    return essence(call.route, *answer)


async def run_scenario(server: Server, scenario: list[Call]) -> None:
    engine = FakeEngine(quoting_judge, delay=server.engine_delay_s, max_model_len=server.context)
    app = build_app(server.settings(), engine=engine)
    async with app.router.lifespan_context(app):
        state, service = app.state.grm, app.state.service
        await state.wait_ready(timeout=10)
        answers = await asyncio.gather(
            *(asgi_call(app, c, str(SHORT_DEADLINE_S) if c.short_deadline else None) for c in scenario)
        )

        # Orphaned jobs end after the linger (and a soft call's scoring passes after its generation): wait
        # for that, polling, rather than a fixed time a loaded machine can overrun; a leak still fails.
        def settled() -> bool:
            gate, grouper = state.gate, service.grouper
            return (
                service.dedup.running == service.dedup.waiters == grouper.collecting == grouper.judging == 0
                and state.admission.calls == 0
                and gate.inflight == gate.queued == 0
                and not engine.running
            )

        await wait_until(settled, timeout=5, what="orphaned jobs to end")
        for name, labels in (
            ("grm_grouped_rows_total", {}),
            *(("grm_deduplicated_requests_total", {"how": h}) for h in ("inflight", "cached")),
        ):
            if state.metrics.registry.get_sample_value(name, labels):
                event(f"shared: {name} {labels}")  # --hypothesis-show-statistics: what the cases covered
        assert service.dedup.running == 0 and service.dedup.waiters == 0
        assert service.grouper.collecting == 0 and service.grouper.judging == 0
        assert state.admission.calls == 0 and state.admission.outstanding == {}
        assert state.gate.inflight == state.gate.queued == 0 and state.gate.tenant_inflight == {}
        assert engine.running == set()
        # No GRM prompt ever showed a response that its tenant did not send: a tenant may send the other's
        # texts itself (a repeat of the other tenant's body), and its prompts may then show them.
        sent = {tenant_of(k.encode()): b" ".join(c.body for c in scenario if c.tenant == t) for t, k in KEYS.items()}
        for request in engine.requests:
            shown = " ".join(shown_responses(request.prompt))
            for mark in (f"[{t}]" for t in KEYS if f"[{t}]" in shown):
                assert mark.encode() in sent[request.tenant], (mark, request.prompt)
        assert service.dedup.cached <= server.cache_entries
        assert service.dedup.cached_bytes <= server.cache_mib * 2**20
    leftover = asyncio.all_tasks() - {asyncio.current_task()}
    assert not leftover, leftover

    expected: dict[tuple[str, str, bytes], Any] = {}
    for i, (call, answer) in enumerate(zip(scenario, answers, strict=True)):
        if answer is None:
            event("call: hung up")
            continue  # hung up: nobody hears the answer
        status, body = answer
        event(f"call: {status}")
        other_mark = f"[{next(t for t in KEYS if t != call.tenant)}]".encode()
        if other_mark not in call.body:  # a repeat of the other tenant's body carries its texts itself
            assert other_mark not in body, (call, body)
        got = essence(call.route, status, body)
        if status == 504 or (status == 429 and got[1] == "overloaded"):
            # Its own short deadline: passed (504), or too short for the engine's queue (429 at once).
            assert call.short_deadline, (call, body)
            continue
        if status == 422 and got[1] == "idempotency_key_reused":
            # Only after this tenant used the same key on the same route with another body.
            assert any(
                c.tenant == call.tenant and c.route == call.route and c.key == call.key and c.body != call.body
                for j, c in enumerate(scenario)
                if j != i
            ), call
            continue
        reference = (call.tenant, call.route, call.body)
        if reference not in expected:
            expected[reference] = await alone(server, call)
        assert got == expected[reference], (call, got, expected[reference])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(server=servers, scenario=scenarios())
def test_sharing_never_changes_a_calls_answer(server: Server, scenario: list[Call]) -> None:
    asyncio.run(run_scenario(server, scenario))
