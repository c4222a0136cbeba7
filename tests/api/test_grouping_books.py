"""Admission's books of grouped batches (review of issue #30, findings 5, 6 and 7): a grouped batch's
k samples are counted once, by the rows that will form it, from admission until the batch ends."""

from __future__ import annotations

import asyncio
import json

from server.engines.fake import FakeEngine
from tests.api.conftest import item, running_app, start_call, wait_until

PROMPT = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"


def one_row(response: str) -> dict:
    """OpenRLHF's call for one rollout."""
    return {"query": [PROMPT + response + "<|im_end|>"], "prompts": [PROMPT], "labels": [None]}


async def test_a_batch_call_of_one_prompt_is_refused_by_its_batches_even_with_a_row_of_it_collecting():
    """Finding 5: each of the call's 60 items "would join" the batch its prompt had open, so the call
    was admitted with no work counted, ran 15 batches (60 samples at 20 samples/s) into its 2 s
    deadline and answered 504; alone it is refused at once."""
    engine = FakeEngine(delay=0.2, max_num_seqs=4)  # drains 20 samples/s
    async with running_app(engine, k=4, group_window_s=0.5, idempotency_linger_s=0) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        assert (await client.post("/v1/score", json=item(seed=0))).status_code == 200  # the gate measures a run
        opener = asyncio.create_task(client.post("/v1/score", json={"query": "Name a colour.", "responses": ["red"]}))
        await wait_until(lambda: app.state.service.grouper.collecting, what="the opener's batch")
        before = engine.requests_total
        items = [{"query": "Name a colour.", "responses": [f"colour {i}"]} for i in range(60)]
        call = await client.post("/v1/score", json={"items": items}, headers={"X-Request-Timeout": "2"})
        assert (await opener).status_code == 200
    assert call.status_code == 429, call.text
    assert engine.requests_total - before == 1  # the opener's batch alone reached the engine


async def test_a_burst_of_one_row_calls_is_counted_as_the_batches_it_forms():
    """Finding 6: each call of a burst was admitted before any had opened its batch, so every row
    counted k samples: 64 rows were counted 256 samples where the engine draws 64."""
    engine = FakeEngine(delay=30, max_num_seqs=4)  # nothing finishes while the books are read
    async with running_app(engine, k=4, group_window_s=0.2, max_group_size=4, idempotency_linger_s=0) as client:
        admission = client._transport.app.state.grm.admission  # type: ignore[attr-defined]
        calls = [asyncio.create_task(client.post("/get_reward", json=one_row(f"rollout {i}"))) for i in range(64)]
        await wait_until(lambda: admission.calls == 64, what="the burst to be admitted")
        books = dict(admission.outstanding)
        for c in calls:
            c.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await wait_until(lambda: not admission.outstanding, what="the books to empty")
    assert books == {"": 16 * 4}  # 16 batches of 4 rows, k=4 samples each


async def test_a_burst_that_fits_its_deadline_is_not_refused():
    """Finding 6, as a trainer sees it: the over-count refused a third of a burst (429) that the
    engine finishes in a fraction of its deadline (OpenRLHF drops a reward after five tries)."""
    engine = FakeEngine(delay=0.05, max_num_seqs=4)  # drains 80 samples/s: the burst's 64 take 0.8 s
    async with running_app(engine, k=4, group_window_s=0.2, max_group_size=4) as client:
        assert (await client.post("/v1/score", json=item(seed=0))).status_code == 200  # the gate measures a run
        answers = await asyncio.gather(
            *(
                client.post("/get_reward", json=one_row(f"rollout {i}"), headers={"X-Request-Timeout": "2"})
                for i in range(64)
            )
        )
    assert [a.status_code for a in answers] == [200] * 64


async def test_a_batch_stays_on_the_books_after_the_call_that_opened_it_left():
    """Finding 7: the batch went on for the row that joined it (counted as no work), but the opener's
    k samples left the books with the opener: nobody counted the batch while it waited and ran."""
    engine = FakeEngine(delay=0.3, max_num_seqs=4)
    async with running_app(engine, k=4, group_window_s=0.2, idempotency_linger_s=0) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        admission, grouper = app.state.grm.admission, app.state.service.grouper
        opener, hang_up = start_call(app, "/get_reward", json.dumps(one_row("red")).encode())
        await wait_until(lambda: grouper.collecting, what="the opener's batch")
        joiner = asyncio.create_task(client.post("/get_reward", json=one_row("blue")))
        await wait_until(lambda: admission.calls == 2, what="the joiner to be admitted")
        hang_up.set()
        await opener
        assert grouper.collecting + grouper.judging == 1  # the batch has not ended
        books = dict(admission.outstanding)
        answer = await joiner
        assert admission.outstanding == {}  # and once it ended, nothing is left on them
    assert books == {"": 4}
    assert answer.status_code == 200  # judged without the opener's row, which left the batch with its call
