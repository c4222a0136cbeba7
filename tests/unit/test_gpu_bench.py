"""The GPU benchmark harness (benchmarks/gpu/bench.py) at a tiny size, without an engine.

The HTTP paths run against the real app on a FakeEngine and against a stub of vLLM's OpenAI chat
route; the direct path needs vLLM and runs in the harness itself (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from pathlib import Path

import httpx
import pytest

from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine, length_script

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu" / "bench.py"
PAIRS = [
    {"messages": [{"role": "user", "content": "Is the sky blue?"}], "responses": ["Yes, on a clear day.", "No."]},
    {"messages": [{"role": "user", "content": "2+2?"}], "responses": ["4", "It is 5."]},
]


@functools.cache
def load_bench():
    spec = importlib.util.spec_from_file_location("grm_gpu_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def args(**changes) -> argparse.Namespace:
    return argparse.Namespace(k=3, max_tokens=128, temperature=0.5, concurrency=2, **changes)


async def test_server_path_counts_samples_tokens_and_votes():
    bench = load_bench()
    app = build_app(Settings(engine="fake"), engine=FakeEngine())
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready(timeout=10)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grm.test") as http:
            row = await bench.through_server("http://grm.test", PAIRS, args(), http)
    assert (row.path, row.samples, row.parsed, row.valid_votes) == ("server", 6, 6, 12)
    assert row.seconds > 0 and row.votes_per_s > 0


async def test_hand_written_client_sends_k_shuffled_guided_chat_calls_per_pair():
    bench = load_bench()
    seen: list[dict] = []

    def openai_chat(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        prompt = body["messages"][0]["content"]
        guided = "structured_outputs" in body
        text = length_script(_Req(prompt))[0] if guided else "I think both are fine."
        usage = {"completion_tokens": len(text.split()), "prompt_tokens": 1}
        return httpx.Response(200, json={"choices": [{"message": {"content": text}}], "usage": usage})

    transport = httpx.MockTransport(openai_chat)
    async with httpx.AsyncClient(transport=transport) as http:
        guided = await bench.hand_written_client("http://vllm.test", "grm", PAIRS, args(), True, http)
        unguided = await bench.hand_written_client("http://vllm.test", "grm", PAIRS, args(), False, http)
    assert (guided.samples, guided.parsed, guided.valid_votes) == (6, 6, 12)
    assert (unguided.path, unguided.parsed, unguided.valid_votes) == ("openai-unguided", 0, 0)
    regexes = {b["structured_outputs"]["regex"] for b in seen if "structured_outputs" in b}
    assert len(regexes) == 1 and "Scores: " in regexes.pop()  # grm-serve's own guidance regex
    assert len(seen) == 12 and {b["seed"] for b in seen[:6]} == {0, 1, 2, 1000, 1001, 1002}


def test_table_gives_ratios_against_direct_and_the_guided_client():
    bench = load_bench()
    rows = [
        bench.Row("direct", 10.0, 16, 16, 2000, 32),
        bench.Row("server", 10.0, 16, 16, 1950, 32),
        bench.Row("openai", 20.0, 16, 16, 2000, 32),
    ]
    text = bench.table(rows)
    assert "| server | 10.0 | 16 | 16/16 | 195 | 3.2 | 0.975 | 2.00 |" in text
    assert "| openai | 20.0 | 16 | 16/16 | 100 | 1.6 | 0.500 | 1.00 |" in text
    # without the client (``--paths direct,server``, as on a tiny CPU run) the column stays empty
    assert "| server | 10.0 | 16 | 16/16 | 195 | 3.2 | 0.975 |  |" in bench.table(rows[:2])


def test_27b_shape_keeps_the_tokenizer_and_drops_the_weights(tmp_path):
    bench = load_bench()
    source = tmp_path / "src"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"hidden_size": 576, "tie_word_embeddings": True}))
    (source / "tokenizer.json").write_text("{}")
    (source / "model.safetensors").write_bytes(b"weights")
    out = bench.shaped_model(source, tmp_path / "out", bench.SHAPE_27B)
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_size"] == 4608 and config["num_hidden_layers"] == 46 and config["head_dim"] == 128
    assert (out / "tokenizer.json").exists() and not (out / "model.safetensors").exists()
    flags = bench.engine_flags(argparse.Namespace(max_model_len=4096, shape="27b", gpu_memory_utilization=0.9))
    assert flags == ["--max-model-len", "4096", "--load-format", "dummy", "--gpu-memory-utilization", "0.9"]


def test_unknown_paths_are_refused():
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.main(["--paths", "direct,teleport"])


class _Req:
    def __init__(self, prompt: str) -> None:
        self.prompt = prompt
        self.n = 1
