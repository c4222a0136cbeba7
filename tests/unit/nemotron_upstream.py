"""NeMo Gym's and NeMo-RL's own GenRM code, run from the verbatim copies in
tests/data/judges/nemotron-genrm/ (SOURCE.md names repositories, paths, commits and blob hashes).

Neither project installs from PyPI, and their modules import their frameworks (fastapi, ray, nemo_gym),
so the functions grm-serve must agree with are taken out of the upstream files by name (``ast``) and
run with the few names they use stubbed: what runs is upstream's text, not a re-implementation. The one
re-implemented step is NeMo Gym's Responses-to-Chat conversion of plain-text turns (cited below).
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import logging
import textwrap
import typing
from functools import cache
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data" / "judges" / "nemotron-genrm"
GYM_APP = DATA / "gym" / "genrm_compare_app.py.txt"
GYM_UTILS = DATA / "gym" / "genrm_compare_utils.py.txt"
GYM_UTILS_TESTS = DATA / "gym" / "genrm_compare_tests_test_utils.py.txt"
GYM_MODEL_APP = DATA / "gym" / "genrm_model_app.py.txt"
NEMO_RL_ENV = DATA / "nemo_rl" / "genrm_pairwise_environment.py.txt"
NEMO_RL_UTILS = DATA / "nemo_rl" / "utils.py.txt"
BOXED_EXAMPLE = DATA / "gym" / "generative_reward_model_VALID_SCORE_TEXT.txt"

_TYPING = {name: getattr(typing, name) for name in ("Any", "Dict", "List", "Optional", "Tuple")}


@cache
def gym_utils() -> ModuleType:
    """``resources_servers/genrm_compare/utils.py`` as a module (it imports only numpy and pydantic)."""
    loader = SourceFileLoader("gym_genrm_compare_utils", str(GYM_UTILS))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _definition(path: Path, *names: str) -> str:
    """The source of the definition reached by ``names`` (a class, then a method in it), dedented."""
    text = path.read_text()
    body: list[ast.stmt] = ast.parse(text).body
    node: ast.AST | None = None
    for name in names:
        node = next(
            n for n in body if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name
        )
        body = node.body  # type: ignore[attr-defined]
    segment = ast.get_source_segment(text, node)  # type: ignore[arg-type]
    assert segment is not None
    return textwrap.dedent(" " * node.col_offset + segment)  # type: ignore[attr-defined]


def _run(source: str, name: str, namespace: dict[str, Any]) -> Any:
    exec(compile(source, name, "exec"), namespace)
    return namespace


def gym_default_principle() -> str:
    """``GenRMCompareConfig.default_principle`` (app.py lines 109-122), read from the upstream text."""
    config = ast.parse(_definition(GYM_APP, "GenRMCompareConfig")).body[0]
    field = next(n for n in config.body if isinstance(n, ast.AnnAssign) and n.target.id == "default_principle")  # type: ignore[attr-defined,union-attr]
    return ast.literal_eval(field.value)  # type: ignore[arg-type]


class _CreateParams(SimpleNamespace):
    def model_copy(self, deep: bool = False) -> _CreateParams:
        return _CreateParams(**vars(self))


def _run_single_comparison(
    history: list[dict[str, str]], objs: tuple[dict, dict], principle: str | None, use_principle: bool
) -> dict:
    """``GenRMCompareResourcesServer._run_single_comparison`` (app.py lines 430-519) with a server
    client that records the ``/v1/responses`` body it posts and answers one well-formed verdict."""
    utils = gym_utils()
    posted: list[Any] = []

    class Response:
        async def json(self) -> dict:
            return {
                "output": [
                    {
                        "type": "message",
                        "content": [{"type": "output_text", "text": '{"score_1": 4, "score_2": 3, "ranking": 2}'}],
                    }
                ]
            }

    class ServerClient:
        async def post(self, server_name: str, url_path: str, json: Any) -> Response:
            posted.append(json)
            return Response()

    namespace = _run(_definition(GYM_APP, "GenRMCompareResourcesServer", "_run_single_comparison"), "gym_app", {
        **_TYPING,
        "asyncio": asyncio,
        "logger": logging.getLogger("gym"),
        # a pydantic model upstream; the converter reads it back as these three fields
        "NeMoGymEasyInputMessage": lambda role, content, type: {"role": role, "content": content, "type": type},
        "extract_output_text": utils.extract_output_text,
        "parse_genrm_output": utils.parse_genrm_output,
        "GenRMOutputParseError": utils.GenRMOutputParseError,
    })  # fmt: skip
    config = SimpleNamespace(
        use_principle=use_principle,
        default_principle=gym_default_principle(),
        genrm_responses_create_params=_CreateParams(input=[], max_output_tokens=16384, temperature=0.6, top_p=0.95),
        genrm_parse_retries=0,
        genrm_parse_retry_sleep_s=0.0,
        default_score=3.0,
        default_ranking=3.5,
        genrm_model_server=SimpleNamespace(name="genrm_model"),
    )
    server = SimpleNamespace(config=config, server_client=ServerClient())
    verdict = asyncio.run(namespace["_run_single_comparison"](server, history, objs[0], objs[1], (0, 1), principle))
    assert verdict == (4.0, 3.0, 2.0)
    (body,) = posted
    return {"input": body.input, "metadata": body.metadata}


def _responses_to_chat(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NeMo Gym ``nemo_gym/responses_converter.py`` @ 07d6b0d0, ``responses_to_chat_completion_create_params``
    (lines 161-268) with ``_format_message`` (306-411) and ``flush_assistant`` (102-128), for plain
    string turns: a user or system turn becomes ``{"role", "content"}``; assistant text is buffered
    and flushed as one assistant message (``content`` None when empty) before the next other turn."""
    messages: list[dict[str, Any]] = []
    buffer, buffered = "", False
    for m in items:
        if m["role"] == "assistant":
            buffer, buffered = buffer + m["content"], True
            continue
        if buffered:
            messages.append({"content": buffer or None, "role": "assistant"})
            buffer, buffered = "", False
        messages.append({"content": m["content"], "role": m["role"]})
    if buffered:
        messages.append({"content": buffer or None, "role": "assistant"})
    return messages


def gym_messages(
    history: list[dict[str, str]],
    objs: tuple[dict, dict],
    principle: str | None = None,
    *,
    use_principle: bool = False,
    supports_principle_role: bool = True,
) -> list[dict[str, Any]]:
    """The chat NeMo Gym sends vLLM for one comparison: the resources server's request, converted,
    then ``GenRMModelMixin._preprocess_chat_completion_create_params`` (genrm_model/app.py lines 47-79).

    The mixin's ``super()`` is the vLLM model server's preprocessing (vllm_model/app.py line 433):
    with genrm_compare.yaml's model block (no developer turns, ``uses_reasoning_parser: false``, no
    sampling overrides) it leaves the messages as they are, so a pass-through stands in for it.
    """
    request = _run_single_comparison(history, objs, principle, use_principle)

    class Base:
        def _preprocess_chat_completion_create_params(self, request: Any, body_dict: dict) -> dict:
            return body_dict

    namespace = _run(_definition(GYM_MODEL_APP, "GenRMModelMixin"), "gym_model_app", {
        **_TYPING, "Request": object, "VLLMConverter": object,
    })  # fmt: skip

    class Model(namespace["GenRMModelMixin"], Base):  # type: ignore[misc,name-defined]
        config = SimpleNamespace(supports_principle_role=supports_principle_role)

    body = {"messages": _responses_to_chat(request["input"]), "metadata": request["metadata"]}
    return Model()._preprocess_chat_completion_create_params(None, body)["messages"]


def response_obj(answer: str, reasoning: str = "") -> dict:
    """A policy's Response API object as Gym's own tests build it (``_response_obj`` in test_utils.py)."""
    output: list[dict] = []
    if reasoning:
        output.append({"type": "reasoning", "summary": [{"type": "summary_text", "text": reasoning}]})
    output.append({"type": "message", "content": [{"type": "output_text", "text": answer}]})
    return {"output": output}


def gym_parser_cases() -> list[tuple[str, str, dict[str, float] | None]]:
    """Gym's ``TestParseGenRMOutput`` cases: (test name, the output text, the values it asserts, or
    None where it asserts the defaults or a raise), read from the upstream test file."""
    cls = ast.parse(GYM_UTILS_TESTS.read_text()).body
    tests = next(n for n in cls if isinstance(n, ast.ClassDef) and n.name == "TestParseGenRMOutput")
    cases = []
    for fn in tests.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        output = next(
            ast.literal_eval(s.value)
            for s in fn.body
            if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "output"
        )
        asserted = {  # ``assert score_1 == approx(4.0)`` -> {"score_1": 4.0}
            ast.unparse(s.test.left): ast.literal_eval(s.test.comparators[0].args[0])  # type: ignore[attr-defined]
            for s in fn.body
            if isinstance(s, ast.Assert) and ast.unparse(s.test).split(" == ")[-1].startswith("approx(")
        }
        defaults = "default" in fn.name or "raise" in fn.name
        cases.append((fn.name, output, None if defaults else asserted))
    return cases


def nemo_rl_parse(output: str) -> tuple[float, float, float]:
    """NeMo-RL's ``_parse_genrm_output`` (genrm_pairwise_environment.py lines 234-279) with its
    ``extract_answer_from_box`` (environments/utils.py lines 64-99)."""
    box = _run(_definition(NEMO_RL_UTILS, "extract_answer_from_box"), "nemo_rl_utils", {})
    method = _run(_definition(NEMO_RL_ENV, "AsyncGenRMWorker", "_parse_genrm_output"), "nemo_rl_env", {
        **_TYPING, "logging": logging, "extract_answer_from_box": box["extract_answer_from_box"],
    })  # fmt: skip
    return method["_parse_genrm_output"](None, output)


def gym_aggregate(
    results: list[tuple[float, float, float]], metadata: list[tuple[int, int, int]], n: int
) -> list[float]:
    """Gym's ``aggregate_scores`` (utils.py lines 685-813), ``simple_tiebreaker``, every length and
    style bonus off (genrm_compare.yaml's values)."""
    rewards, _, base, bonuses = gym_utils().aggregate_scores(
        comparison_results=results,
        comparison_metadata=metadata,
        response_objs=[{"output": []}] * n,
        aggregator_method="simple_tiebreaker",
        default_score=3.0,
        reasoning_bonus=0.0,
        answer_bonus=0.0,
        top_percentile=0.2,
        group_reasoning_length_penalty_coeff=0.0,
        group_answer_length_penalty_coeff=0.0,
        group_style_penalty_coeff=0.0,
    )
    assert rewards == base and not any(bonuses)
    return list(rewards)
