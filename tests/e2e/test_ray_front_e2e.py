"""The Ray front at its edges, through a real local Ray cluster (Ray's HTTP proxy, the front, two
grm-serve replicas on the fake engine, API keys on, a 128 KiB body limit).

Calls are written on a raw socket where it matters when the front answers: a call that declares a
body and never sends it is answered at once only by a front that checks before it reads (one that
reads first waits for ever). Then the affinity router's books: after calls that fail, hang up and
time out, its in-flight counts and the calls it tracks return to zero (issue #30, finding 8).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import RayCluster, ray_serve_app

pytestmark = pytest.mark.e2e

KEY = "front-key"
LIMIT = 128 * 1024
DELAY_S = 1.0
ANSWER_TIMEOUT_S = 15  # a front that waits for the missing body never answers
BEARER = {"authorization": f"Bearer {KEY}"}
ITEM = {"query": "2+2?", "responses": ["4", "5"]}


@pytest.fixture(scope="module")
def ray_front() -> Iterator[RayCluster]:
    pytest.importorskip("ray", reason="ray[serve] is part of the dev extra")
    args = {
        "replicas": "2",
        "engine": "fake",
        "k": "2",
        "api_keys": KEY,
        "max_body_bytes": str(LIMIT),
        "extra_engine_args": {"delay": DELAY_S},
    }
    with ray_serve_app(args, num_cpus=4) as cluster:
        yield cluster


async def raw_call(url: str, head: str, parts: tuple[bytes, ...] = ()) -> tuple[int, dict[str, str], bytes]:
    """Write a request head (and ``parts``) on a new connection, leave the rest unsent, read the answer."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        for part in parts:
            writer.write(part)
        await writer.drain()
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                status = int((await reader.readline()).split()[1])
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
        except TimeoutError:
            pytest.fail(f"no answer in {ANSWER_TIMEOUT_S} s: the front is waiting for a body it should never read")
        return status, headers, body
    finally:
        writer.close()


def head(path: str, *lines: str) -> str:
    return "\n".join([f"POST {path} HTTP/1.1", "host: grm", "content-type: application/json", *lines, ""])


async def test_a_call_without_a_key_is_401_before_its_body_arrives(ray_front):
    status, headers, body = await raw_call(ray_front.url, head("/v1/score", "content-length: 60000"))
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert json.loads(body)["error"]["type"] == "unauthorized"
    async with httpx.AsyncClient(base_url=ray_front.url, timeout=30) as client:
        assert (await client.get("/health/ready")).status_code == 200  # open, as on grm-serve
        assert (await client.get("/metrics")).status_code == 200  # metrics_public (the default)


async def test_a_declared_length_over_the_limit_is_413_before_the_body_arrives(ray_front):
    lines = (f"authorization: Bearer {KEY}", f"content-length: {LIMIT + 1}")
    status, _, body = await raw_call(ray_front.url, head("/v1/score", *lines))
    assert status == 413 and json.loads(body)["error"] == {
        "type": "too_large", "message": f"request body exceeds {LIMIT} bytes", "code": 413,
    }  # fmt: skip


async def test_a_streamed_body_over_the_limit_is_413_before_it_ends(ray_front):
    chunk = b"x" * 8192
    parts = tuple(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // len(chunk) + 2))  # no last chunk
    lines = (f"authorization: Bearer {KEY}", "transfer-encoding: chunked")
    status, _, body = await raw_call(ray_front.url, head("/v1/score", *lines), parts)
    assert status == 413 and json.loads(body)["error"]["type"] == "too_large"


async def test_deeply_nested_json_is_grm_serves_400_not_a_bare_500(ray_front):
    async with httpx.AsyncClient(base_url=ray_front.url, timeout=30, headers=BEARER) as client:
        reply = await client.post("/v1/score", content=b"[" * 100_000, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["type"] == "invalid_request" and "x-grm-replica" in reply.headers


async def router_state() -> dict[str, Any]:
    from ray import serve

    return await serve.get_app_handle("grm").router_state.remote()


async def wait_for_state(holds: Callable[[dict[str, Any]], bool], timeout_s: float = 30) -> dict[str, Any]:
    """Poll the front's router until ``holds``; its last state either way. Completions reach the router
    through Ray's callbacks, a moment after the caller has its answer."""
    deadline = time.monotonic() + timeout_s
    state = await router_state()
    while not holds(state) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        state = await router_state()
    return state


def idle(state: dict[str, Any]) -> bool:
    return state["tracked"] == 0 and not any(state["inflight"].values())


async def test_the_routers_books_return_to_zero_after_failed_hung_up_and_timed_out_calls(ray_front):
    assert idle(await wait_for_state(idle))  # the earlier tests' calls have all ended
    every_call_its_connection = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(
        base_url=ray_front.url, timeout=60, headers=BEARER, limits=every_call_its_connection
    ) as client:
        slow = asyncio.create_task(client.post("/v1/score", json={**ITEM, "seed": 1}))
        busy = await wait_for_state(lambda s: s["tracked"] >= 1)
        assert busy["routers"] == 1 and sum(busy["inflight"].values()) >= 1, busy  # the hook sees live calls

        async def hang_up(i: int) -> str:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(
                    "/v1/score", json={**ITEM, "seed": 100 + i}, timeout=httpx.Timeout(DELAY_S / 5, pool=60)
                )
            return "hung up"

        calls = [
            # 422 from a replica within milliseconds: Ray reported many such calls complete before routed
            *(client.post("/v1/score", json={"items": "nope", "seed": i}) for i in range(64)),
            *(client.get(f"/nope/{i}") for i in range(16)),  # 404 from a replica
            *(client.get("/%01") for _ in range(8)),  # forward raises on the replica (httpx refuses the URL)
            *(client.post("/v1/score", json={**ITEM, "seed": 200 + i}, headers={"x-request-timeout": "0.05"})
              for i in range(8)),  # grm-serve's own deadline: 504
            *(client.post("/v1/score", json={**ITEM, "seed": 300 + i}, headers={"x-request-timeout-seconds": "0.2"})
              for i in range(8)),  # Ray's proxy gives up and cancels the call
            *(hang_up(i) for i in range(8)),  # the client hangs up mid-call
            *(client.post("/v1/score", json={**ITEM, "seed": 400 + i}) for i in range(8)),
        ]  # fmt: skip
        outcomes = await asyncio.gather(*calls)
        assert (await slow).status_code == 200
    seen = Counter(o if isinstance(o, str) else o.status_code for o in outcomes)
    print(f"outcomes: {dict(seen)}")
    assert seen[422] == 64 and seen[404] == 16 and seen["hung up"] == 8 and seen[200] == 8
    assert seen[500] == 8 and seen[504] == 8 and seen[408] == 8
    state = await wait_for_state(idle)
    print(f"router state after the calls: {state}")
    assert idle(state), state
