"""Prometheus 2 prompts are byte for byte what the installed ``prometheus-eval`` 0.1.20 builds.

Upstream's side runs the package's own code: ``PrometheusEval.single_absolute_grade`` /
``single_relative_grade`` fill the template (``get_prompt_template``) and wrap it with the system prompt in
fastchat's ``mistral`` conversation (``_get_conversation_prompt``, PyPI ``fastchat`` 0.1.0). The only
piece reproduced here is ``prometheus_eval/vllm.py``'s ``VLLM.completions`` (``prompt.strip()``), since
importing that module imports vLLM: :class:`VLLMStandIn` stands in for it and records what it is sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_eval import PrometheusEval
from prometheus_eval import prompts as upstream
from prometheus_eval.mock import MockLLM

from server.pipeline.domain import Message
from server.pipeline.judges import get_judge
from server.pipeline.judges import prometheus_prompts as ours

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "judges" / "prometheus-2"
README = json.loads((FIXTURES / "README_examples.json").read_text(encoding="utf-8"))
LEVELS = [f"score{i}_description" for i in range(1, 6)]


class VLLMStandIn:
    """What ``PrometheusEval`` sees of ``prometheus_eval.vllm.VLLM``: ``validate_vllm`` makes it wrap each
    prompt in the mistral conversation; ``completions`` strips them as ``VLLM.completions`` does,
    records them and the sampling parameters, and answers well-formed."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.prompts: list[str] = []
        self.params: dict[str, object] = {}

    def validate_vllm(self) -> bool:
        return True

    def completions(self, prompts: list[str], use_tqdm: bool = True, **params: object) -> list[str]:
        self.prompts = [prompt.strip() for prompt in prompts]
        self.params = params
        return [self.answer] * len(prompts)


def upstream_prompt(mode: str, instruction: str, responses: list[str], rubric: str, reference: str | None):
    """The text and sampling parameters upstream sends its vLLM model for one grading."""
    model = VLLMStandIn("Fine. [RESULT] 5" if mode == "absolute" else "Fine. [RESULT] A")
    judge = PrometheusEval(
        model=MockLLM(),  # a model with validate_vllm would make the constructor import vLLM
        absolute_grade_template=upstream.get_prompt_template("absolute", reference is not None),
        relative_grade_template=upstream.get_prompt_template("relative", reference is not None),
    )
    judge.model = model
    if mode == "absolute":
        judge.single_absolute_grade(
            instruction=instruction, response=responses[0], rubric=rubric, reference_answer=reference
        )
    else:
        judge.single_relative_grade(
            instruction=instruction,
            response_A=responses[0],
            response_B=responses[1],
            rubric=rubric,
            reference_answer=reference,
        )
    (prompt,) = model.prompts
    return prompt, model.params


def readme_case(mode: str) -> tuple[str, list[str], str, str, list[str]]:
    """A README example's instruction, responses, reference, rubric text (as upstream's README builds
    it) and the same rubric as grm-serve principles."""
    if mode == "absolute":
        case = README["absolute"]
        data = case["rubric_data"]
        principles = [data["criteria"], *(data[level] for level in LEVELS)]
        rubric = upstream.SCORE_RUBRIC_TEMPLATE.format(**data)
        return case["instruction"], [case["response"]], case["reference_answer"], rubric, principles
    case = README["relative"]
    rubric = case["rubric"]
    return case["instruction"], [case["response_A"], case["response_B"]], case["reference_answer"], rubric, [rubric]


@pytest.mark.parametrize("mode", ["absolute", "relative"])
@pytest.mark.parametrize("with_reference", [True, False])
def test_the_readme_examples_render_byte_for_byte_as_upstream(mode, with_reference):
    instruction, responses, reference, rubric, principles = readme_case(mode)
    reference_or_none = reference if with_reference else None
    expected, _ = upstream_prompt(mode, instruction, responses, rubric, reference_or_none)
    judge = get_judge(f"prometheus-2-{mode}")
    prompt = judge.render([Message("user", instruction)], responses, principles, reference_or_none)
    assert prompt.raw and prompt.system is None and prompt.messages is None
    assert prompt.user == expected
    assert expected.startswith("[INST] You are a fair judge") and expected.endswith("###Feedback:  [/INST]")


@pytest.mark.parametrize("mode", ["absolute", "relative"])
@pytest.mark.parametrize("with_reference", [True, False])
def test_without_principles_the_prompt_is_upstreams_with_its_helpfulness_rubric(mode, with_reference):
    instruction = 'Explain "{braces}" and ### Markdown in\ntwo lines; naïve café ☕'
    responses = ["First line.\n\n### A heading\n- item {0}", "Second, with a tab\tand trailing space "][
        : 1 if mode == "absolute" else 2
    ]
    reference = "The reference answer, {with} braces." if with_reference else None
    expected, _ = upstream_prompt(mode, instruction, responses, upstream.load_rubric("helpfulness", mode), reference)
    prompt = get_judge(f"prometheus-2-{mode}").render([Message("user", instruction)], responses, None, reference)
    assert prompt.user == expected


@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_six_principles_fill_upstreams_rubric_template_and_relative_keeps_its_criteria_line(mode):
    principles = ["Is the answer concise?", "Rambling.", "Long.", "Adequate.", "Brief.", "Crisp and complete."]
    data = dict(zip(["criteria", *LEVELS], principles, strict=True))
    full = upstream.SCORE_RUBRIC_TEMPLATE.format(**data)
    # load_rubric(..., "relative") keeps a rubric's first line; the same cut of a caller's rubric.
    rubric = full if mode == "absolute" else full.split("\n")[0]
    responses = ["One.", "Two."][: 1 if mode == "absolute" else 2]
    expected, _ = upstream_prompt(mode, "Q?", responses, rubric, None)
    assert get_judge(f"prometheus-2-{mode}").render([Message("user", "Q?")], responses, principles).user == expected


@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_the_default_sampling_is_upstreams(mode):
    judge = get_judge(f"prometheus-2-{mode}")
    _, params = upstream_prompt(mode, "Q?", ["One.", "Two."][: 1 if mode == "absolute" else 2], "[Helpful?]", None)
    s = judge.sampling
    assert params == {
        "max_tokens": s.max_tokens,
        "repetition_penalty": s.repetition_penalty,
        "best_of": 1,  # vLLM's default: one sample per sequence
        "temperature": s.temperature,
        "top_p": s.top_p,
    }


def test_the_embedded_prompt_texts_are_the_packages():
    names = [n for n in dir(ours) if n.isupper()]
    assert sorted(names) == sorted(
        ["ABS_SYSTEM_PROMPT", "REL_SYSTEM_PROMPT", "ABSOLUTE_PROMPT", "ABSOLUTE_PROMPT_WO_REF", "RELATIVE_PROMPT",
         "RELATIVE_PROMPT_WO_REF", "SCORE_RUBRIC_TEMPLATE", "HELPFULNESS_RUBRIC"]
    )  # fmt: skip
    assert {n: getattr(ours, n) for n in names} == {n: getattr(upstream, n) for n in names}
