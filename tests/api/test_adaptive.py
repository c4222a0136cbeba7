"""Adaptive k over HTTP: options and their errors, what an answer reports, metrics, trainer routes,
rerank, grouping, and a deadline or a hang-up in the middle of a round."""

from __future__ import annotations

import asyncio
import json

import pytest

from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine
from tests.api.conftest import running_app, start_call, wait_until

CLEAR = {"query": "Explain tides.", "responses": ["The Moon's gravity pulls the oceans into two bulges.", "No."]}
TIED = {"query": "Pick one.", "responses": ["aaaa", "bbbb"]}  # the length judge votes them equal: never decided
CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


async def test_rank_stops_a_clear_pair_early_and_says_so():
    async with running_app(FakeEngine(), group_window_s=0) as client:
        full = await client.post("/v1/score", json={**CLEAR, "k": 8, "seed": 1})
        fast = await client.post("/v1/score", json={**CLEAR, "k": 8, "seed": 1, "adaptive": "rank"})
        metrics = (await client.get("/metrics")).text
    assert fast.status_code == 200, fast.text
    f, a = full.json(), fast.json()
    # Two responses, k=8: rank cannot decide before 5 samples, rounds are whole rotations (6).
    assert (a["k"], a["k_used"], a["stop_reason"], a["rounds"], a["total_samples"]) == (8, 6, "rank", 1, 6)
    assert (f["k_used"], f["stop_reason"], f["rounds"]) == (8, "off", 1)
    assert [r["mean_score"] for r in a["responses"]] == [r["mean_score"] for r in f["responses"]]
    assert [r["votes"] for r in a["responses"]] == [6, 6]
    # score sums 6 votes; normalized_score is the mean times the 8 votes full k gives, as full k's score.
    assert [r["normalized_score"] for r in a["responses"]] == [r["score"] for r in f["responses"]]
    assert a["usage"]["generation_tokens"] * 8 == f["usage"]["generation_tokens"] * 6
    assert metric(metrics, 'grm_samples_per_item_count{adaptive="rank"}') == 1
    assert metric(metrics, 'grm_samples_per_item_sum{adaptive="rank"}') == 6
    assert metric(metrics, 'grm_samples_per_item_sum{adaptive="off"}') == 8
    assert metric(metrics, 'grm_samples_saved_total{adaptive="rank"}') == 2
    assert metric(metrics, 'grm_adaptive_stops_total{reason="rank"}') == 1


async def test_stderr_stops_at_k_min_when_every_vote_agrees_and_a_tie_runs_to_k():
    async with running_app(FakeEngine(), group_window_s=0, adaptive="stderr", adaptive_k_min=2) as client:
        settled = await client.post("/v1/score", json={**CLEAR, "k": 8})  # the server's default rule
        tied = await client.post("/v1/score", json={**TIED, "k": 8, "adaptive": "rank", "k_min": 2})
        info = (await client.get("/v1/info")).json()
    assert (settled.json()["k_used"], settled.json()["stop_reason"]) == (2, "stderr")  # zero spread at k_min
    assert (tied.json()["k_used"], tied.json()["stop_reason"], tied.json()["rounds"]) == (8, "k", 2)
    assert info["adaptive"] == "stderr"
    assert info["defaults"]["k_min"] == 2 and info["defaults"]["adaptive_epsilon"] == 0.5


async def test_confident_stops_a_clear_pair_at_k_min_counts_it_and_runs_a_tie_to_k():
    async with running_app(FakeEngine(), group_window_s=0, adaptive="confident", adaptive_k_min=2) as client:
        settled = await client.post("/v1/score", json={**CLEAR, "k": 16})  # the server's default rule
        tied = await client.post("/v1/score", json={**TIED, "k": 8, "adaptive_delta": 0.2})
        info = (await client.get("/v1/info")).json()
        metrics = (await client.get("/metrics")).text
    assert (settled.json()["k_used"], settled.json()["stop_reason"]) == (2, "confident"), settled.text
    assert (tied.json()["k_used"], tied.json()["stop_reason"]) == (8, "k")  # a tie now is never likely final
    assert info["adaptive"] == "confident" and info["defaults"]["adaptive_delta"] == 0.02
    assert metric(metrics, 'grm_adaptive_stops_total{reason="confident"}') == 1
    assert metric(metrics, 'grm_samples_saved_total{adaptive="confident"}') == 14


@pytest.mark.parametrize(
    ("options", "status", "message"),
    [
        ({"k": 4, "adaptive": "rank", "k_min": 5}, 400, "k_min = 5 exceeds k = 4"),
        ({"k_min": 2}, 400, "k_min applies only to adaptive k"),
        ({"adaptive": "rank", "adaptive_epsilon": 0.3}, 400, "adaptive_epsilon applies only to adaptive 'stderr'"),
        ({"adaptive": "stderr", "adaptive_delta": 0.1}, 400, "adaptive_delta applies only to adaptive 'confident'"),
        ({"adaptive_delta": 0.1}, 400, "adaptive_delta applies only to adaptive 'confident', not 'off'"),
        ({"adaptive": "confident", "adaptive_epsilon": 0.3}, 400, "adaptive_epsilon applies only"),
        ({"adaptive": "confident", "adaptive_delta": 1.5}, 422, "adaptive_delta"),
        ({"adaptive": "sometimes"}, 422, "adaptive"),
        ({"adaptive": "stderr", "adaptive_epsilon": 0}, 422, "adaptive_epsilon"),
        ({"adaptive": "rank", "k_min": 0}, 422, "k_min"),
    ],
)
async def test_bad_adaptive_options_get_a_clear_error(options, status, message):
    engine = FakeEngine()
    async with running_app(engine) as client:
        r = await client.post("/v1/score", json={**CLEAR, **options})
        rerank = await client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"], **options})
    for answer in (r, rerank):
        assert answer.status_code == status, answer.text
        assert message in answer.text
    assert engine.requests_total == 0


async def test_trainer_routes_report_k_used_and_raw_rewards_are_k_normalised():
    rows = {"query": [CHATML.format("Explain tides.") + r for r in CLEAR["responses"]],
            "prompts": [CHATML.format("Explain tides.")] * 2, "reward": "raw"}  # fmt: skip
    async with running_app(FakeEngine(), group_window_s=0, k=8, adaptive="rank") as client:
        adaptive = (await client.post("/get_reward", json=rows)).json()
        slime = (await client.post("/v1/reward", json={"prompt": CHATML.format("Hi"), "response": "Hello"})).json()
    async with running_app(FakeEngine(), group_window_s=0, k=8) as client:
        full = (await client.post("/get_reward", json=rows)).json()
    assert adaptive["extra_logs"]["grm_k_used"] == [6.0, 6.0] and full["extra_logs"]["grm_k_used"] == [8.0, 8.0]
    assert adaptive["rewards"] == full["rewards"]  # 6 votes scaled to the 8 of full k: the same raw sums
    assert slime["k_used"] == 4  # one response: its order is final at once, so k_min samples


async def test_a_rerank_stops_once_its_top_n_and_their_order_are_decided():
    documents = ["x" * 95, "y", "z" * 2, "w" * 3, "v" * 75, "u"]  # two clear winners (votes 10 and 8) among six
    body = {"query": "Best?", "documents": documents, "top_n": 2, "k": 16, "seed": 3}
    async with running_app(FakeEngine(), max_group_size=3) as client:
        full = (await client.post("/v1/rerank", json=body)).json()
        fast = (await client.post("/v1/rerank", json={**body, "adaptive": "rank"})).json()
    assert [r["index"] for r in fast["results"]] == [r["index"] for r in full["results"]] == [0, 4]
    groups = fast["meta"]["grm"]["groups"]
    assert [g["documents"] for g in groups] == [[0, 1, 2], [0, 3, 4], [0, 5]]
    assert all(g["stop_reason"] == "rank" and g["k_used"] < 16 for g in groups), groups
    assert all(g["k_used"] == 16 and g["stop_reason"] == "off" for g in full["meta"]["grm"]["groups"])
    assert fast["usage"]["generation_tokens"] < full["usage"]["generation_tokens"]


async def test_rows_grouped_across_calls_share_their_prompts_rounds():
    prompt = CHATML.format("Explain tides.")
    async with running_app(FakeEngine(), group_window_s=0.2, k=8, adaptive="rank") as client:
        answers = await asyncio.gather(
            *(client.post("/get_reward", json={"query": [prompt + r], "prompts": [prompt]}) for r in CLEAR["responses"])
        )
    logs = [a.json()["extra_logs"] for a in answers]
    assert [log["grm_group_size"] for log in logs] == [[2.0], [2.0]]
    assert [log["grm_k_used"] for log in logs] == [[6.0], [6.0]]


async def test_a_deadline_in_the_second_round_answers_504_and_aborts_the_round():
    engine = FakeEngine(delay=0.3)
    # No linger: a job nobody waits for any more is aborted at once (with one, a retry may attach to it).
    async with running_app(engine, group_window_s=0, idempotency_linger_s=0) as client:
        r = await client.post(
            "/v1/score", json={**TIED, "k": 8, "adaptive": "rank"}, headers={"X-Request-Timeout": "0.45"}
        )
        await wait_until(lambda: not engine.running, what="the round to be aborted")
    assert r.status_code == 504, r.text
    first, second = ([q.request_id for q in engine.requests if q.request_id.endswith(f"-r{i}")] for i in (1, 2))
    assert len(first) == 2 and len(second) == 2  # round 1: 6 samples in two orders; round 2: one rotation
    assert set(engine.aborted) == set(second)


async def test_a_client_that_hangs_up_mid_round_leaves_no_engine_work():
    engine = FakeEngine(delay=0.2)
    app = build_app(Settings(engine="fake", idempotency_linger_s=0, group_window_s=0), engine=engine)
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready(timeout=10)
        call, gone = start_call(app, "/v1/score", json.dumps({**TIED, "k": 8, "adaptive": "rank"}).encode())
        await wait_until(lambda: any(q.request_id.endswith("-r2") for q in engine.requests), what="round 2")
        gone.set()
        await asyncio.wait_for(call, timeout=5)
        assert engine.running == set()
        assert engine.aborted and all(a.endswith("-r2") for a in engine.aborted)
        assert app.state.grm.admission.calls == 0 and app.state.grm.gate.inflight == 0


async def test_an_adaptive_call_keeps_its_place_in_line_while_its_tenant_keeps_sending():
    """Issue #30 finding 4: round 2 queued behind every request its tenant sent since round 1, while
    admission had counted one pass: a call admitted within its deadline answered 504."""
    engine = FakeEngine(delay=0.3, max_num_seqs=4)
    async with running_app(engine, group_window_s=0, idempotency_linger_s=0) as client:
        gate = client._transport.app.state.grm.gate  # type: ignore[attr-defined]
        assert (await client.post("/v1/score", json={**CLEAR, "k": 4, "seed": 0})).status_code == 200  # measured
        adaptive = asyncio.create_task(
            client.post("/v1/score", json={**TIED, "k": 8, "adaptive": "rank"}, headers={"X-Request-Timeout": "2"})
        )
        await wait_until(lambda: any(q.request_id.endswith("-r1") for q in engine.requests), what="round 1")
        later = [asyncio.create_task(client.post("/v1/score", json={**CLEAR, "k": 4, "seed": i})) for i in range(1, 31)]
        await wait_until(lambda: gate.queued >= 100, what="the later calls to wait at the gate")  # ~9 s of work
        r = await adaptive
        for call in later:
            call.cancel()
        await asyncio.gather(*later, return_exceptions=True)
    assert r.status_code == 200, r.text
    assert (r.json()["k_used"], r.json()["rounds"]) == (8, 2)  # both rounds (a tie is never decided early)
