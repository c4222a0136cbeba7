"""grm-client on httpx.MockTransport: error mapping, retries, batching, typed results."""

import json

import httpx
import pytest

import grm_client as g

SCORE_BODY = {
    "model": "m",
    "template": "t",
    "responses": [
        {"index": 0, "score": 30.0, "mean_score": 7.5, "votes": 4, "valid_samples": 8, "status": "ok"},
        {"index": 1, "score": 8.0, "mean_score": 2.0, "votes": 4, "valid_samples": 8, "status": "ok"},
        {"index": 2, "score": None, "mean_score": None, "votes": 0, "valid_samples": 0, "status": "no_valid_samples"},
    ],
    "k": 8,
    "k_meta": 4,
    "valid_samples": 8,
    "total_samples": 8,
    "usage": {"prompt_tokens": 10, "generation_tokens": 20},
    "timings": {"generate_seconds": 1.0, "meta_rm_seconds": 0.0},
    "samples": None,
}


def error(status, type_, retry_after=None):
    headers = {"retry-after": retry_after} if retry_after else {}
    body = {"error": {"type": type_, "message": f"{type_} happened", "code": status}}
    return httpx.Response(status, json=body, headers={**headers, "x-request-id": "rid-1"})


def client_with(responses, **kwargs):
    """A client whose transport answers from ``responses`` in turn, recording requests and sleeps."""
    seen, sleeps = [], []
    queue = list(responses)

    def handler(request):
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    client = g.GRMClient(transport=httpx.MockTransport(handler), backoff_base=0.01, **kwargs)
    client._sleep = sleeps.append
    return client, seen, sleeps


@pytest.mark.parametrize(
    ("status", "type_", "cls"),
    [
        (400, "invalid_request", g.InvalidRequestError),
        (422, "invalid_request", g.InvalidRequestError),
        (413, "too_large", g.TooLargeError),
        (401, "unauthorized", g.UnauthorizedError),
        (429, "overloaded", g.OverloadedError),
        (503, "not_ready", g.NotReadyError),
        (503, "engine_dead", g.EngineDeadError),
        (504, "timeout", g.DeadlineExceededError),
        (500, "internal_error", g.InternalServerError),
    ],
)
def test_every_server_error_type_maps_to_its_class(status, type_, cls):
    client, _, _ = client_with([error(status, type_)] * 10, max_retries=0)
    with pytest.raises(cls) as info:
        client.score("q", ["a"])
    assert info.value.status_code == status and info.value.type == type_
    assert info.value.message == f"{type_} happened" and info.value.request_id == "rid-1"


def test_a_proxy_error_without_our_body_maps_by_status():
    client, _, _ = client_with([httpx.Response(502, text="Bad Gateway")], max_retries=0)
    with pytest.raises(g.InternalServerError, match="Bad Gateway"):
        client.score("q", ["a"])


def test_retries_honour_retry_after_then_succeed():
    client, seen, sleeps = client_with(
        [error(429, "overloaded", "3"), error(503, "not_ready", "1"), httpx.Response(200, json=SCORE_BODY)]
    )
    result = client.score("q", ["a", "b", "c"])
    assert len(seen) == 3 and sleeps == [3.0, 1.0]
    assert result.responses[0].score == 30.0


def test_backoff_is_jittered_exponential_without_retry_after():
    client, _, sleeps = client_with([error(504, "timeout")] * 4 + [httpx.Response(200, json=SCORE_BODY)])
    client.score("q", ["a"])
    assert len(sleeps) == 4
    assert all(0 <= s <= 0.01 * 2**i for i, s in enumerate(sleeps))


def test_validation_errors_are_never_retried():
    client, seen, sleeps = client_with([error(422, "invalid_request"), httpx.Response(200, json=SCORE_BODY)])
    with pytest.raises(g.InvalidRequestError):
        client.score("q", ["a"])
    assert len(seen) == 1 and sleeps == []


def test_transport_errors_are_retried_and_then_raised():
    boom = httpx.ConnectError("refused")
    client, seen, _ = client_with([boom, boom, boom], max_retries=2)
    with pytest.raises(g.TransportError, match="cannot reach"):
        client.score("q", ["a"])
    assert len(seen) == 3
    timeout, _, _ = client_with([httpx.ReadTimeout("slow")], max_retries=0)
    with pytest.raises(g.RequestTimeoutError):
        timeout.score("q", ["a"])


def test_request_body_options_and_api_key():
    client, seen, _ = client_with([httpx.Response(200, json=SCORE_BODY)], api_key="secret")
    client.score([{"role": "user", "content": "hi"}], ["a", "b"], k=8, k_meta=2, seed=1, return_samples=True)
    body = json.loads(seen[0].content)
    assert body == {
        "messages": [{"role": "user", "content": "hi"}],
        "responses": ["a", "b"],
        "k": 8,
        "k_meta": 2,
        "seed": 1,
        "return_samples": True,
    }
    assert seen[0].headers["authorization"] == "Bearer secret"


def test_reward_modes_and_missing_values():
    client, _, _ = client_with([httpx.Response(200, json=SCORE_BODY)])
    result = client.score("q", ["a", "b", "c"])
    assert result.rewards("raw") == [30.0, 8.0, None]
    assert result.rewards("mean", missing=0.0) == [7.5, 2.0, 0.0]
    assert result.rewards("unit") == [pytest.approx(6.5 / 9), pytest.approx(1 / 9), None]
    with pytest.raises(ValueError, match="unknown reward mode"):
        result.responses[0].reward("log")  # type: ignore[arg-type]


def test_rank_orders_best_first_and_unscored_last():
    client, _, _ = client_with([httpx.Response(200, json=SCORE_BODY)])
    ranking = client.rank("q", ["a", "b", "c"])
    assert ranking.order == [0, 1, 2] and ranking.best == 0


def test_large_batches_are_split_and_reassembled_in_order():
    def handler(request):
        items = json.loads(request.content)["items"]
        out = []
        for it in items:
            n = int(it["query"])
            out.append({**SCORE_BODY, "responses": [{**SCORE_BODY["responses"][0], "score": float(n)}]})
        return httpx.Response(200, json={"model": "m", "template": "t", "items": out})

    client = g.GRMClient(transport=httpx.MockTransport(handler), batch_size=3, max_concurrency=2)
    items = [g.build_item(str(i), ["x"]) for i in range(10)]
    results = client.score_batch(items)
    assert [r.responses[0].score for r in results] == [float(i) for i in range(10)]


async def test_async_client_retries_and_splits_the_same_way():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            return error(503, "not_ready", "0")
        items = json.loads(request.content)["items"]
        return httpx.Response(200, json={"model": "m", "template": "t", "items": [SCORE_BODY] * len(items)})

    async with g.AsyncGRMClient(transport=httpx.MockTransport(handler), batch_size=2) as client:
        results = await client.score_batch([g.build_item("q", ["a"]) for _ in range(5)])
    assert len(results) == 5 and len(calls) == 4  # one retried, then three chunks


def test_every_scoring_call_carries_one_idempotency_key_kept_across_its_retries():
    ok = httpx.Response(200, json=SCORE_BODY)
    client, seen, _ = client_with([httpx.ReadTimeout("slow"), error(504, "timeout"), ok, ok])
    client.score("q", ["a"])
    keys = [r.headers.get("idempotency-key") for r in seen]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1  # the retries attach to the first job
    client.score("q", ["a"])
    assert seen[-1].headers["idempotency-key"] != keys[0]  # a new call is a new job


@pytest.mark.parametrize("failure", [httpx.ReadTimeout("slow"), error(504, "timeout")])
def test_without_keys_timeouts_and_504s_are_not_retried(failure):
    client, seen, sleeps = client_with([failure, httpx.Response(200, json=SCORE_BODY)], idempotency_keys=False)
    with pytest.raises((g.RequestTimeoutError, g.DeadlineExceededError)):
        client.score("q", ["a"])
    assert len(seen) == 1 and sleeps == [] and "idempotency-key" not in seen[0].headers
    overloaded, seen, _ = client_with(
        [error(429, "overloaded"), httpx.Response(200, json=SCORE_BODY)], idempotency_keys=False
    )
    overloaded.score("q", ["a"])  # refused before any work: still retried
    assert len(seen) == 2
