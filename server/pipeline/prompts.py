"""Versioned GRM prompt templates (pure functions, no model or engine).

The default template reproduces the DeepSeek-GRM pointwise prompt of Liu et al. 2025, Appendix G,
byte for byte (typo "responeses" included): the released checkpoints were trained on it, so it is
the model's input format, not prose to improve. A template is looked up by its versioned name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from meta_rm.text import neutralize, render_blocks, render_context, render_reference
from server.pipeline.domain import Message

__all__ = [
    "DEFAULT_TEMPLATE",
    "HINT_TEMPLATE",
    "PRINCIPLES_TEMPLATE",
    "REFERENCE_TEMPLATE",
    "TEMPLATES",
    "Template",
    "get_template",
    "neutralize",
    "render_context",
]

DEFAULT_TEMPLATE = "deepseek-grm-default-v1"

_HEADER = """\
You are a skilled little expert at scoring responses. You should evaluate given responses based on the given judging criteria.
Given the context of the conversation (the last round is the User's query) and multiple responses from the Assistant, you need to refer to the [General Evaluation Criteria] to score the responses. Based on the general evaluation criteria, state potential other specific criteria to the query, the weights of different criteria, and then provide an overall comprehensive score upon them.
Each score is an integer between 1 and 10, with a higher score indicating that the response meets the relevant criteria more closely. For example, a score of 1 means the response does not meet the criteria at all, a score of 6 means the response meets only some parts, and a score of 10 means the response perfectly meets the evaluation criteria.
Before scoring, please analyze step by step. Your scoring needs to be as strict as possible.

#### Evaluation Criteria ####
1. Instruction Adherence:
   - Fully Adhered (9-10 points): The response fully complies with all instructions and requirements of the question.
   - Partially Adhered (6-8 points): The response meets most of the instructions but has some omissions or misunderstandings.
   - Basically Adhered (3-5 points): The response meets some instructions, but the main requirements are not fulfilled.
   - Not Adhered (1-2 points): The response does not meet any instructions.
   Example: If the question requires three examples and the response provides only one, it falls under "Partially Adhered."
2. Usefulness:
   - Highly Useful (9-10 points): The response provides comprehensive and accurate information, fully addressing the issue.
   - Useful but Incomplete (6-8 points): The response provides some useful information, but lacks details or accuracy.
   - Limited Usefulness (3-5 points): The response offers little useful information, with most content being irrelevant or incorrect.
   - Useless or Incorrect (1-2 points): The response is completely irrelevant or incorrect.
   Example: If there are factual errors in the response but the overall direction is correct, it falls under "Useful but Incomplete."
3. Level of Detail:
   - Very Detailed (9-10 points): The response includes ample details covering all aspects of the issue.
   - Detailed but Slightly Lacking (6-8 points): The response is fairly detailed but misses some important details.
   - Basically Detailed (3-5 points): The response provides some details but is not thorough enough overall.
   - Not Detailed (1-2 points): The response is very brief and lacks necessary details.
   Example: If the response provides only a simple conclusion without an explanation, it falls under "Not Detailed."
4. Relevance:
   - Highly Relevant (9-10 points): The response is highly relevant to the question, with information closely aligned with the topic.
   - Generally Relevant (6-8 points): The response is generally relevant but includes some unnecessary information.
   - Partially Relevant (3-5 points): The response has a lot of content that deviates from the topic.
   - Not Relevant (1-2 points): The response is completely irrelevant.
   Example: If the response strays from the topic but still provides some relevant information, it falls under "Partially Relevant."

#### Conversation Context ####
"""

_RESPONSES_HEADER = "\n\n#### Responses to be Scored ####\n"

_FOOTER_TEMPLATE = """
#### Output Format Requirements ####
Output with three lines
Specific Criteria: <Other potential criteria specific to the query and the context, and the weights of each criteria>.
Analysis: <Compare different responses based on given Criteria>.
Scores: <the overall comprehensive score of all responses in order, separate by comma in the boxed, e.g., \\boxed{{{example}}} if there exists {n} responeses>."""


PRINCIPLES_TEMPLATE = "deepseek-grm-principles-v1"

# User rubrics (``principles`` on a request): the default template with the caller's criteria in place
# of the four general ones, and the instruction to judge by them rather than write its own. The output
# format is unchanged, so parsing, guidance and the meta RM's input work as with the default.
_GENERAL = "you need to refer to the [General Evaluation Criteria] to score the responses. Based on the general evaluation criteria, state potential other specific criteria to the query, the weights of different criteria, and then provide an overall comprehensive score upon them."
_GIVEN = "you need to refer to the [Given Evaluation Criteria] to score the responses. Judge only by the given evaluation criteria: state how each applies to the query and its weight, and then provide an overall comprehensive score upon them."
_SPECIFIC_LINE = "Specific Criteria: <Other potential criteria specific to the query and the context, and the weights of each criteria>."
_GIVEN_LINE = "Specific Criteria: <How each given criterion applies to the query and the context, and the weights of each criteria>."


REFERENCE_TEMPLATE = "deepseek-grm-reference-v1"

# Reference answers (``reference`` on a request, OpenRLHF's labels, verl's ground_truth): the template in
# use with one more instruction after "analyze step by step" and the reference shown in its own section
# between the conversation and the responses, defanged like any caller text. Everything else, the
# output format included, is unchanged; without a reference the prompt is byte for byte the same.
_STEP_BY_STEP = "Before scoring, please analyze step by step."
_REFERENCE_RULE = (
    " A reference answer to the query is given below: first check each response's correctness against it."
    " A response whose final answer contradicts the reference answer is incorrect and must score low,"
    " however well it is written."
)


HINT_TEMPLATE = "deepseek-grm-hint-v1"

# Hinted sampling (SPCT's rejective fine-tuning, grm-train): for an item the judge never gets right, the
# preferred response is named in a section after the responses, so that the judge can write a correct
# trajectory to learn from. Training prompts are rendered without it. Not a serving template: a server never
# knows the answer.
_HINT_SECTION = (
    "\n\n#### Hint ####\nResponse {position} is the best of the responses: score it strictly higher than every other."
)


def render_principles(principles: Sequence[str]) -> str:
    """The caller's criteria as the numbered ``#### Evaluation Criteria ####`` section (defanged)."""
    return "\n".join(f"{i}. {neutralize(p.strip())}" for i, p in enumerate(principles, start=1))


@dataclass(frozen=True)
class Template:
    """A named, versioned GRM prompt template."""

    name: str

    def render(
        self,
        messages: Sequence[Message],
        responses: Sequence[str],
        principles: Sequence[str] | None = None,
        reference: str | None = None,
        *,
        hint: int | None = None,
    ) -> str:
        """Build the user-turn text that asks the GRM to score ``responses`` in the given order.

        With ``principles`` (a user rubric) the prompt is :data:`PRINCIPLES_TEMPLATE`: the caller's
        criteria replace the general ones. With ``reference`` it is :data:`REFERENCE_TEMPLATE` (the two
        combine). With ``hint`` (the 1-based position of the preferred response among ``responses``) it
        is :data:`HINT_TEMPLATE`: a hint section after the responses names it (training only). Without
        any, it is this template byte for byte.

        Raises:
            ValueError: if there are no responses, ``principles`` is empty or ``hint`` is out of range.
        """
        if not responses:
            raise ValueError("at least one response is needed")
        if hint is not None and not 1 <= hint <= len(responses):
            raise ValueError(f"hint {hint} names no response of {len(responses)}")
        blocks = render_blocks(responses)
        if hint is not None:
            blocks += _HINT_SECTION.format(position=hint)
        example = ", ".join("x" for _ in responses)
        footer = _FOOTER_TEMPLATE.format(example=example, n=len(responses))
        header = _HEADER
        if principles is not None:
            if not principles:
                raise ValueError("principles must hold at least one criterion")
            criteria_start = header.index("#### Evaluation Criteria ####\n") + len("#### Evaluation Criteria ####\n")
            criteria_end = header.index("\n#### Conversation Context ####")
            header = header[:criteria_start] + render_principles(principles) + "\n" + header[criteria_end:]
            header = header.replace(_GENERAL, _GIVEN)
            footer = footer.replace(_SPECIFIC_LINE, _GIVEN_LINE)
        context = render_context(messages)
        if reference is not None:
            header = header.replace(_STEP_BY_STEP, _STEP_BY_STEP + _REFERENCE_RULE)
            context += render_reference(reference)
        return header + context + _RESPONSES_HEADER + blocks + "\n" + footer


TEMPLATES: dict[str, Template] = {DEFAULT_TEMPLATE: Template(DEFAULT_TEMPLATE)}


def get_template(name: str) -> Template:
    """Look a template up by its versioned name.

    Raises:
        KeyError: if no template has that name; the message lists the known ones.
    """
    try:
        return TEMPLATES[name]
    except KeyError:
        known = ", ".join(sorted(TEMPLATES))
        raise KeyError(f"unknown template {name!r}; known templates: {known}") from None
