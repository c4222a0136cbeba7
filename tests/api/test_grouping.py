"""Grouping across calls: same-prompt rows of separate requests share GRM prompts (server/serving/grouping.py)."""

from __future__ import annotations

import asyncio

from server.engines.fake import FakeEngine, shown_responses
from server.pipeline.domain import Message
from server.serving.validation import ItemOptions
from tests.api.conftest import item, running_app, wait_until

PROMPT = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
ROLLOUTS = [f"Colour number {i} is {'very ' * i}blue." for i in range(8)]


def one_row(response: str, prompt: str = PROMPT, label: str | None = None) -> dict:
    """OpenRLHF's call for one rollout."""
    return {"query": [prompt + response + "<|im_end|>"], "prompts": [prompt], "labels": [label]}


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_one_row_calls_of_one_prompt_share_grm_prompts():
    engine = FakeEngine()
    async with running_app(engine, k=2, group_window_s=1.0) as client:
        calls = [client.post("/get_reward", json=one_row(r)) for r in ROLLOUTS]
        answers = await asyncio.gather(*calls)
        metrics = (await client.get("/metrics")).text
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert [a.json()["extra_logs"]["grm_group_size"] for a in answers] == [[4.0]] * 8
    # Two GRM groups of four rollouts, k=2 samples each (orders may share one request), not 8 x 2.
    assert sum(req.n for req in engine.requests) == 4
    assert all(len(shown_responses(req.prompt)) == 4 for req in engine.requests)
    # The fake judge prefers longer responses, and each call got its own rollout's reward back.
    rewards = [a.json()["rewards"][0] for a in answers]
    assert rewards[:4] == sorted(rewards[:4]) and rewards[4:] == sorted(rewards[4:])
    assert metric(metrics, "grm_grouped_rows_total") == 8
    assert metric(metrics, 'grm_samples_total{status="parsed"}') == 4  # each batch's samples counted once


async def test_grouped_prompts_show_plain_turns_and_responses_without_end_tokens():
    engine = FakeEngine()
    async with running_app(engine, k=1, group_window_s=1.0) as client:
        await asyncio.gather(*(client.post("/get_reward", json=one_row(r)) for r in ROLLOUTS[:4]))
    (request,) = engine.requests
    assert "<|im_start|>" not in request.prompt and "<|im_end|>" not in request.prompt
    assert "#### Conversation Context ####\nName a colour.\n\n#### Responses" in request.prompt
    assert sorted(shown_responses(request.prompt)) == sorted(ROLLOUTS[:4])


async def test_grouping_off_judges_each_call_alone():
    engine = FakeEngine()
    async with running_app(engine, k=2, group_window_s=0) as client:
        answers = await asyncio.gather(*(client.post("/get_reward", json=one_row(r)) for r in ROLLOUTS))
        metrics = (await client.get("/metrics")).text
    assert [a.json()["extra_logs"]["grm_group_size"] for a in answers] == [[1.0]] * 8
    assert all(len(shown_responses(req.prompt)) == 1 for req in engine.requests)
    assert metric(metrics, "grm_grouped_rows_total") == 0


async def test_a_lone_row_is_judged_when_the_window_ends():
    engine = FakeEngine()
    async with running_app(engine, k=2, group_window_s=0.05) as client:
        r = await client.post("/get_reward", json=one_row("Red."))
    assert r.status_code == 200 and r.json()["extra_logs"]["grm_group_size"] == [1.0]


async def test_different_prompts_labels_and_api_keys_never_share_a_prompt(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("key-a\nkey-b\n")
    engine = FakeEngine()
    other_prompt = PROMPT.replace("colour", "fruit")
    async with running_app(engine, k=1, group_window_s=0.5, api_key_file=keys) as client:
        a = {"Authorization": "Bearer key-a"}
        b = {"Authorization": "Bearer key-b"}
        calls = [
            client.post("/get_reward", json=one_row("Blue."), headers=a),
            client.post("/get_reward", json=one_row("Green."), headers=a),
            client.post("/get_reward", json=one_row("Red."), headers=b),
            client.post("/get_reward", json=one_row("Apple.", other_prompt), headers=a),
            client.post("/get_reward", json=one_row("Grey.", label="Blue"), headers=a),
        ]
        answers = await asyncio.gather(*calls)
    assert [x.json()["extra_logs"]["grm_group_size"] for x in answers] == [[2.0], [2.0], [1.0], [1.0], [1.0]]
    assert sorted(len(shown_responses(req.prompt)) for req in engine.requests) == [1, 1, 1, 2]


async def test_single_item_v1_score_calls_are_grouped_but_seeded_or_sample_returning_ones_are_not():
    engine = FakeEngine()
    item = {"query": "Name a colour.", "k": 2}
    async with running_app(engine, group_window_s=1.0) as client:
        grouped = [client.post("/v1/score", json={**item, "responses": [r]}) for r in ROLLOUTS[:4]]
        alone = [
            client.post("/v1/score", json={**item, "responses": ["Teal."], "seed": 3}),
            client.post("/v1/score", json={**item, "responses": ["Navy."], "return_samples": True}),
        ]
        answers = await asyncio.gather(*grouped, *alone)
    sizes = [a.json()["responses"][0]["group_size"] for a in answers]
    assert sizes == [4, 4, 4, 4, 1, 1]
    first = answers[0].json()
    assert first["total_samples"] == 2 and first["valid_samples"] == 2
    assert answers[5].json()["samples"][0]["responses"] == [0]  # its samples show only its own response


async def test_a_call_that_leaves_does_not_cancel_the_batch_for_the_others():
    engine = FakeEngine(delay=0.3)
    async with running_app(engine, k=1, group_window_s=0.05) as client:
        leaving = asyncio.create_task(client.post("/get_reward", json=one_row("Blue.")))
        staying = asyncio.create_task(client.post("/get_reward", json=one_row("Blue and green.")))
        await wait_until(lambda: engine.running, what="the batch to reach the engine")
        leaving.cancel()
        r = await staying
    assert r.status_code == 200 and r.json()["extra_logs"]["grm_group_size"] == [2.0]
    assert engine.aborted == []


async def test_when_every_call_of_a_batch_leaves_the_engine_work_is_aborted():
    engine = FakeEngine(delay=30)
    async with running_app(engine, k=1, group_window_s=0.05, idempotency_linger_s=0) as client:
        calls = [asyncio.create_task(client.post("/get_reward", json=one_row(r))) for r in ROLLOUTS[:2]]
        await wait_until(lambda: engine.running, what="the batch to reach the engine")
        for c in calls:
            c.cancel()
        await wait_until(lambda: engine.aborted, what="the engine request to be aborted")
    assert not engine.running


async def test_a_call_that_leaves_while_its_batch_collects_is_taken_out():
    engine = FakeEngine()
    async with running_app(engine, k=1, group_window_s=0.3, idempotency_linger_s=0) as client:
        leaving = asyncio.create_task(client.post("/get_reward", json=one_row("Blue.")))
        await asyncio.sleep(0.05)
        staying = asyncio.create_task(client.post("/get_reward", json=one_row("Blue and green.")))
        await asyncio.sleep(0.05)
        leaving.cancel()
        r = await staying
    assert r.json()["extra_logs"]["grm_group_size"] == [1.0]
    (request,) = engine.requests
    assert shown_responses(request.prompt) == ["Blue and green."]


async def test_admission_charges_a_batch_s_k_samples_to_the_call_that_opens_it():
    async with running_app(FakeEngine(), k=8, group_window_s=1.0) as client:
        service = client._transport.app.state.service  # type: ignore[attr-defined]
        validator = client._transport.app.state.validator  # type: ignore[attr-defined]
        spec = validator.resolve(ItemOptions(messages=(Message("user", "Name a colour."),), responses=("red",)))
        assert service.plan([spec], [True]) == (8, [])  # alone it would cost a whole group's k samples
        first = asyncio.create_task(client.post("/get_reward", json=one_row(ROLLOUTS[0])))
        await wait_until(lambda: service.grouper.collecting, what="the first row to open a batch")
        work, joins = service.plan([spec], [True])
        assert work == 0 and len(joins) == 1  # joining it costs nothing more; it waits for that batch
        assert service.plan([spec], [False]) == (8, [])
        await first


async def test_a_row_joining_an_admitted_batch_is_admitted_by_that_batch_not_its_tenants_backlog():
    """Issue #30 finding 5: the joining row brings no work, yet admission counted all its tenant's later
    work against its deadline: 429, and a retry would open a second batch and pay k samples again."""
    engine = FakeEngine(delay=0.2, max_num_seqs=4)
    async with running_app(engine, k=4, group_window_s=0.5, idempotency_linger_s=0) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        assert (await client.post("/v1/score", json=item(seed=0))).status_code == 200  # the gate measures a run
        opener = asyncio.create_task(client.post("/get_reward", json=one_row(ROLLOUTS[0])))
        await wait_until(lambda: app.state.service.grouper.collecting, what="the first row to open a batch")
        backlog = [asyncio.create_task(client.post("/v1/score", json=item(seed=i))) for i in range(1, 21)]
        await wait_until(lambda: app.state.grm.gate.queued >= 60, what="the later calls to wait at the gate")
        joiner = await client.post("/get_reward", json=one_row(ROLLOUTS[1]), headers={"X-Request-Timeout": "2"})
        first = await opener
        for call in backlog:
            call.cancel()
        await asyncio.gather(*backlog, return_exceptions=True)
    assert joiner.status_code == 200, joiner.text
    assert [r.json()["extra_logs"]["grm_group_size"] for r in (first, joiner)] == [[2.0], [2.0]]
    batch = [q for q in engine.requests if set(shown_responses(q.prompt)) & {ROLLOUTS[0], ROLLOUTS[1]}]
    assert sum(q.n for q in batch) == 4  # one batch: k samples, paid once
    assert all(len(shown_responses(q.prompt)) == 2 for q in batch)
