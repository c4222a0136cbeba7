"""Bodies whose text the engine cannot take, or that nest deep: a clear 400 or an answer, never a 500
(review of issue #30, findings 4 and 8)."""

import asyncio
from types import SimpleNamespace

import httpx
import pytest

from server.app import build_app
from server.config import Settings
from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine, length_script
from server.engines.model_files import _CONVERTED_DIR, default_cache_dir
from server.engines.vllm import VLLMEngine
from server.serving import validation
from server.serving.errors import APIError
from tests.api.conftest import as_python_json, running_app


def tokenizing_script(request: GenerationRequest) -> list[str]:
    """The default script, after encoding the prompt as a tokenizer does: a lone surrogate fails it."""
    request.prompt.encode("utf-8")
    return length_script(request)


LONE = "\ud800"  # valid JSON ("\ud800"), but no Unicode text
TEXT_FIELDS = [
    ("/v1/score", {"query": "q" + LONE, "responses": ["a"]}, "query"),
    ("/v1/score", {"messages": [{"role": "user", "content": LONE}], "responses": ["a"]}, "messages[0].content"),
    ("/v1/score", {"query": "q", "responses": ["a", "b" + LONE]}, "responses[1]"),
    ("/v1/score", {"query": "q", "responses": ["a"], "reference": LONE}, "reference"),
    ("/v1/score", {"query": "q", "responses": ["a"], "principles": ["ok", LONE]}, "principles[1]"),
    (
        "/v1/score",
        {"items": [{"query": "q", "responses": ["a"]}, {"query": LONE, "responses": ["a"]}]},
        "items[1].query",
    ),
    ("/get_reward", {"query": ["pa" + LONE], "prompts": ["p"]}, "query[0]"),
    ("/get_reward", {"query": ["pa"], "prompts": ["p"], "labels": [LONE]}, "labels[0]"),
    ("/v1/reward", {"prompt": "p", "response": "a" + LONE}, "response"),
    ("/v1/reward", {"prompt": "p", "response": "a", "label": LONE}, "label"),
    ("/v1/rerank", {"query": "q", "documents": ["a", "b" + LONE]}, "documents[1]"),
    ("/v1/rerank", {"query": "q", "documents": [{"text": "a", "title": LONE}]}, "documents[0].title"),
]


@pytest.mark.parametrize(("path", "body", "field"), TEXT_FIELDS, ids=[f"{p} {f}" for p, _, f in TEXT_FIELDS])
async def test_a_lone_surrogate_in_any_text_field_is_a_400_naming_it(path, body, field):
    engine = FakeEngine(tokenizing_script)
    async with running_app(engine, k=1) as client:
        reply = await client.post(path, **as_python_json(body))
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request" and error["message"].startswith(f"{field} holds a lone surrogate")
    assert engine.requests_total == 0


async def test_a_surrogate_pair_is_text_and_is_judged():
    async with running_app(FakeEngine(tokenizing_script), k=1) as client:
        reply = await client.post("/v1/score", **as_python_json({"query": "q", "responses": ["\U0001f600"]}))
    assert reply.status_code == 200  # Python's json writes it as the escaped pair "\ud83d\ude00"


async def test_a_rollout_with_a_lone_surrogate_leaves_the_rollouts_grouped_with_it_judged():
    engine = FakeEngine(tokenizing_script)
    async with running_app(engine, k=1, group_window_s=5.0, max_group_size=4) as client:
        rows = ["good one", "good two", "good three", "bad " + LONE]
        calls = [client.post("/v1/reward", **as_python_json({"prompt": "Say hi", "response": r})) for r in rows]
        answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [200, 200, 200, 400]
    assert [a.json()["group_size"] for a in answers[:3]] == [3, 3, 3]


MODEL = default_cache_dir() / _CONVERTED_DIR


class _NoLLM:
    """What VLLMEngine reads of vLLM's AsyncLLM; generate answers as the fake engine's default script."""

    errored = False
    prompt = ""

    async def generate(self, prompt, params, request_id):
        request = GenerationRequest(request_id, self.prompt, params.n, 1.0, 1.0, 64)
        outputs = [SimpleNamespace(text=t, finish_reason="stop", token_ids=[1]) for t in length_script(request)]
        yield SimpleNamespace(outputs=outputs)

    async def abort(self, request_id):
        pass

    def shutdown(self):
        pass


class TokenizingEngine(VLLMEngine):
    """grm-serve's vLLM engine with the bundled model's real tokenizer, without vLLM's AsyncLLM."""

    async def start(self) -> None:
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(MODEL)
        self._llm = _NoLLM()
        self._max_num_seqs = 64

    async def generate(self, request: GenerationRequest):  # type: ignore[override]
        self._llm.prompt = request.prompt
        return await super().generate(request)


@pytest.mark.skipif(not MODEL.exists(), reason="needs the converted embedded model (grm-serve --model embedded)")
async def test_the_real_tokenizer_never_sees_a_lone_surrogate():
    async with running_app(TokenizingEngine("m", "m")) as client:  # type: ignore[arg-type]
        good = await client.post("/v1/score", json={"query": "q", "responses": ["fine"], "k": 1})
        bad = await client.post("/v1/score", **as_python_json({"query": "q", "responses": ["x" + LONE], "k": 1}))
    assert good.status_code == 200 and bad.status_code == 400


HEADS = {"/get_reward": '{"query":["pa"],"prompts":["p"],"x":', "/v1/reward": '{"prompt":"p","response":"a","x":'}


@pytest.mark.parametrize("path", sorted(HEADS))
async def test_no_nesting_depth_answers_500(path):
    """Both routes accept extra fields, so any depth fits their schema; the deepest bodies FastAPI still
    parses are the ones a later parse of the same body, deeper in the stack, could not."""
    app = build_app(Settings(engine="fake", k=1), engine=FakeEngine())
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready(timeout=10)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def post(depth: int) -> httpx.Response:
                body = HEADS[path] + "[" * depth + "]" * depth + "}"
                return await client.post(path, content=body, headers={"content-type": "application/json"})

            parsed, unparsed = 1, 20_000  # bisect for the deepest body FastAPI parses
            while unparsed - parsed > 1:
                depth = (parsed + unparsed) // 2
                reply = await post(depth)
                too_deep = reply.status_code == 400 and "parsing the body" in reply.json()["error"]["message"]
                parsed, unparsed = (parsed, depth) if too_deep else (depth, unparsed)
            statuses = {depth: (await post(depth)).status_code for depth in range(parsed - 60, parsed + 3)}
    assert 500 not in statuses.values(), sorted(d for d, s in statuses.items() if s == 500)
    # The parser's limit moves by a few levels with the stack the call happens to run on.
    assert {statuses[d] for d in range(parsed - 60, parsed - 10)} == {200}
    assert set(statuses.values()) == {200, 400}


def test_a_lone_surrogate_is_found_at_any_depth():
    body: list = ["x" + LONE]
    for _ in range(100_000):  # past the JSON encoder's recursion limit: found by the walk
        body = [body]
    with pytest.raises(APIError) as refused:
        validation.refuse_lone_surrogates({"prompt": "p", "x": body})
    assert refused.value.message.startswith("x" + "[0]" * 100_001 + " holds a lone surrogate (\\ud800 at character 1)")
