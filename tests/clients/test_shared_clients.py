"""The clients the adapters share: one per process (blocking) or per event loop (async), address and API
key; an event loop's clients closed with it, their sockets included.

The socket tests talk to a real keep-alive HTTP server on the loopback (sockets are what they count)
and hold on to the client they check, so only a close, never the garbage collector, can free its
sockets. They run asyncio's own selector loop, whatever the policy (AReaL installs uvloop's, whose
``close`` closes its sockets itself).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from grm_client import AsyncGRMClient
from grm_client.integrations import _common

SCORED = {
    "model": "m",
    "template": "t",
    "responses": [{"index": 0, "score": 2.0, "mean_score": 1.0, "votes": 1, "valid_samples": 1, "status": "ok"}],
    "k": 1,
    "k_meta": None,
    "valid_samples": 1,
    "total_samples": 1,
    "usage": {},
}


class _Judge(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client pools its connections

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        body = json.dumps(SCORED).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def judge() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def open_sockets_to(url: str) -> list:
    """This process's TCP sockets whose far end is ``url`` (the client's ends; a closed one has no fd)."""
    port = int(url.rsplit(":", 1)[1])
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]


async def score_three(url: str) -> AsyncGRMClient:
    """Three concurrent calls through the loop's shared client, so its pool holds several connections."""
    client = _common.loop_client(url)
    await asyncio.gather(*(client.score("q", ["a"]) for _ in range(3)))
    assert open_sockets_to(url), "the calls left no pooled connection to check"
    return client


def test_one_async_client_per_event_loop_address_and_key():
    async def clients() -> list[AsyncGRMClient]:
        pairs = [("http://a", None), ("http://a", None), ("http://a", "k1"), ("http://a", "k2"), ("http://b", None)]
        return [_common.loop_client(url, key) for url, key in pairs]

    first = asyncio.run(clients())
    second = asyncio.run(clients())
    assert first[0] is first[1]
    assert len({id(c) for c in first[1:]}) == 4  # another key or address: another client
    assert [c.api_key for c in first] == [None, None, "k1", "k2", None]
    assert first[2]._http.headers["authorization"] == "Bearer k1"
    assert second[0] is not first[0]  # a new loop gets its own client


def test_one_blocking_client_per_process_address_and_key():
    client = _common.shared_client("http://a")
    assert _common.shared_client("http://a") is client
    keyed = _common.shared_client("http://a", "k1")
    assert keyed is not client and _common.shared_client("http://a", "k1") is keyed
    assert _common.shared_client("http://a", "k2") is not keyed
    assert keyed.api_key == "k1" and _common._sync_clients[(os.getpid(), "http://a", "k1")] is keyed


def test_asyncio_run_closes_its_loops_clients_and_their_sockets(judge):
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:  # what asyncio.run does
        client = runner.run(score_three(judge))
    assert open_sockets_to(judge) == []
    assert client._http.is_closed
    assert not any(client in entry.clients.values() for entry in _common._loops.values())


def test_a_loop_closed_without_shutting_down_has_its_sockets_closed_at_the_next_call(judge):
    """``loop.close()`` alone finalises nothing (verl's prime reward manager closes its loops so): the
    client's pool cannot be awaited any more, so the next call on any loop closes its sockets."""
    loop = asyncio.SelectorEventLoop()
    stale = loop.run_until_complete(score_three(judge))
    loop.close()
    assert open_sockets_to(judge)  # closing a loop leaves its sockets open

    async def next_call() -> None:
        assert _common.loop_client(judge) is not stale

    asyncio.run(next_call())
    assert open_sockets_to(judge) == []
    assert loop not in _common._loops
