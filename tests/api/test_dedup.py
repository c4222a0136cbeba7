"""Retries don't double the work: identical requests share one job (Idempotency-Key or same body)."""

import asyncio

from server.engines.fake import FakeEngine
from tests.api.conftest import ITEM, item, running_app, wait_until


async def test_an_identical_request_during_the_first_attaches_to_its_job():
    engine = FakeEngine(delay=0.3)
    async with running_app(engine) as client:
        first = asyncio.create_task(client.post("/v1/score", json=ITEM))
        await wait_until(lambda: engine.running, what="the first job to generate")
        second = await client.post("/v1/score", json=ITEM)
        first_r = await first
        metrics = (await client.get("/metrics")).text
    assert first_r.status_code == second.status_code == 200
    assert first_r.json() == second.json()
    assert len(engine.requests) == 2  # one job: its two response orders, nothing for the retry
    assert 'grm_deduplicated_requests_total{how="inflight"} 1.0' in metrics


async def test_a_repeat_after_completion_is_answered_from_the_cache_until_the_ttl():
    engine = FakeEngine()
    async with running_app(engine, idempotency_ttl_s=60) as client:
        a = await client.post("/v1/score", json=ITEM)
        b = await client.post("/v1/score", json=ITEM)
    assert a.json() == b.json()
    assert len(engine.requests) == 2
    engine = FakeEngine()
    async with running_app(engine, idempotency_ttl_s=0) as client:
        await client.post("/v1/score", json=ITEM)
        await client.post("/v1/score", json=ITEM)
    assert len(engine.requests) == 4  # no cache: each call is a job


async def test_the_same_idempotency_key_shares_a_job_and_different_keys_do_not():
    engine = FakeEngine(delay=0.2)
    async with running_app(engine, dedup_identical_requests=False) as client:
        same = [client.post("/v1/score", json=ITEM, headers={"Idempotency-Key": "batch-7"}) for _ in range(3)]
        other = client.post("/v1/score", json=ITEM, headers={"Idempotency-Key": "batch-8"})
        plain = [client.post("/v1/score", json=ITEM) for _ in range(2)]  # body dedup switched off
        rs = await asyncio.gather(*same, other, *plain)
        bad = await client.post("/v1/score", json=ITEM, headers={"Idempotency-Key": "x" * 256})
    assert [r.status_code for r in rs] == [200] * 6
    assert len(engine.requests) == 2 * 4  # batch-7 once, batch-8 once, two unkeyed calls
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["error"]["message"]


async def test_a_retry_after_the_client_gave_up_attaches_to_the_lingering_job():
    engine = FakeEngine(delay=0.5)
    async with running_app(engine, idempotency_linger_s=5) as client:
        with_timeout = asyncio.create_task(client.post("/v1/score", json=item(seed=9)))
        await wait_until(lambda: engine.running, what="the first job to generate")
        with_timeout.cancel()  # the trainer's client timed out and hung up
        retry = await client.post("/v1/score", json=item(seed=9))
    assert retry.status_code == 200
    assert len(engine.requests) == 2 and engine.aborted == []  # the first job finished for the retry


async def test_a_job_nobody_comes_back_for_is_aborted_after_the_linger():
    engine = FakeEngine(delay=30)
    async with running_app(engine, idempotency_linger_s=0.1) as client:
        call = asyncio.create_task(client.post("/v1/score", json=ITEM))
        await wait_until(lambda: len(engine.running) == 2, what="both orders to generate")
        call.cancel()
        await wait_until(lambda: not engine.running, what="the orphaned job to be aborted")
    assert len(engine.aborted) == 2


async def test_get_reward_retries_are_deduplicated_too():
    engine = FakeEngine(delay=0.2)
    body = {"query": ["Q: hi A: hello"], "prompts": ["Q: hi A: "], "labels": [None]}
    async with running_app(engine, k=2) as client:
        rs = await asyncio.gather(*(client.post("/get_reward", json=body) for _ in range(3)))
    assert [r.status_code for r in rs] == [200] * 3
    assert len({tuple(r.json()["rewards"]) for r in rs}) == 1
    assert len(engine.requests) == 1  # one job, one order (a single response), k=2 samples
