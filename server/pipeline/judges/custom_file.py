"""Reading a judge profile file (``--judge-file``, YAML or JSON) into a :class:`CustomJudge`, checked.

Every check runs at startup and fails with a message naming the file's field, so a server never
starts with a profile it cannot serve: unknown fields, placeholders the mode does not take, a verdict
rule that is neither ``after`` nor ``regex`` (or both), named groups the mode does not read, a scale
that is empty, sampling out of range, a verdict regex that can backtrack exponentially
(:mod:`~server.pipeline.judges.backtracking`); and a self-check: the profile's own example output for scores
across its scale (``output_format``, or the ``after`` rule's) must parse back to those scores and,
with ``guidance``, match it whole (``re.fullmatch``), and its prompt must render.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.pipeline.domain import Message
from server.pipeline.judges.backtracking import exponential_loop
from server.pipeline.judges.base import ParseError, Sampling, Scale
from server.pipeline.judges.custom import BY_MODE, COMMON, REQUIRED, SHOWN, CustomJudge, placeholders

NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class JudgeFileError(ValueError):
    """A judge file that cannot be served; the message names the file's field at fault."""


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.5, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1)


class _Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: str | None = Field(None, min_length=1)
    regex: str | None = Field(None, min_length=1)
    labels: tuple[str, str] = ("A", "B")
    output_format: str | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME)
    mode: Literal["group", "single", "pairwise"]
    scale: tuple[float, float] | None = None
    system: str | None = None
    template: str = Field(min_length=1)
    template_name: str | None = Field(None, min_length=1)
    reference_format: str = "{reference}"
    rubric_format: str = "{rubric}"
    response_format: str = "[Response {i}]\n{response}\n[End of Response {i}]"
    response_separator: str = "\n\n"
    verdict: _Verdict
    guidance: str | None = Field(None, min_length=1)
    sampling: _Sampling = Field(default_factory=lambda: _Sampling.model_validate({}))


def read_judge_file(path: Path, builtin: frozenset[str] = frozenset()) -> CustomJudge:
    """The profile a judge file describes (``.json`` is read as JSON, anything else as YAML).

    Args:
        path: the file.
        builtin: names the profile may not take (the built-in judges').

    Raises:
        JudgeFileError: the file cannot be read or parsed, or a check fails; the message names the field.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JudgeFileError(f"judge file: cannot read {path.name}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise JudgeFileError(f"judge file {path.name}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    return judge_from_dict(data, builtin, where=path.name)


def judge_from_dict(data: Any, builtin: frozenset[str] = frozenset(), where: str = "") -> CustomJudge:
    """The profile of a judge file's parsed content (see :func:`read_judge_file`).

    Raises:
        JudgeFileError: a check fails; the message names the field.
    """
    prefix = f"judge file {where}" if where else "judge file"
    try:
        spec = _File.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise JudgeFileError(f"{prefix}: {problems}") from None

    def fail(field: str, message: str) -> JudgeFileError:
        return JudgeFileError(f"{prefix}: {field}: {message}")

    if spec.name in builtin:
        raise fail("name", f"{spec.name!r} is a built-in judge's name; pick another")
    allowed = COMMON | BY_MODE[spec.mode]
    try:
        used = set(placeholders(spec.template))
    except ValueError as exc:
        raise fail("template", str(exc)) from None
    if unknown := sorted(used - allowed):
        raise fail("template", f"unknown placeholder(s) {unknown} for mode {spec.mode!r}; known: {sorted(allowed)}")
    if missing := sorted(REQUIRED[spec.mode] - used):
        raise fail("template", f"mode {spec.mode!r} needs the placeholder(s) {missing}")
    for field, value, names in (
        ("reference_format", spec.reference_format, {"reference"}),
        ("rubric_format", spec.rubric_format, {"rubric"}),
        ("response_format", spec.response_format, {"i", "response"}),
    ):
        try:
            found = set(placeholders(value))
        except ValueError as exc:
            raise fail(field, str(exc)) from None
        if (
            found - names
            or (field != "response_format" and not found)
            or (field == "response_format" and "response" not in found)
        ):
            raise fail(field, f"may use only {sorted(names)}, and must show the {field.split('_')[0]}")
    verdict = spec.verdict
    if (verdict.after is None) == (verdict.regex is None):
        raise fail("verdict", "give exactly one of 'after' (scores after a label) or 'regex' (named groups)")
    winner = False
    if verdict.regex is not None:
        try:
            groups = set(re.compile(verdict.regex).groupindex)
        except re.error as exc:
            raise fail("verdict.regex", f"does not compile: {exc}") from None
        winner = "winner" in groups
        wanted = {"single": [{"score"}], "group": [{"scores"}], "pairwise": [{"score_a", "score_b"}, {"winner"}]}
        if not any(w <= groups for w in wanted[spec.mode]):
            options = " or ".join(str(sorted(w)) for w in wanted[spec.mode])
            raise fail("verdict.regex", f"mode {spec.mode!r} reads the named group(s) {options}")
        if exponential_loop(verdict.regex):
            raise fail(
                "verdict.regex",
                "can backtrack exponentially: a quantifier that repeats (*, +, {m,n}) applies to a part holding an "
                "alternation (|) or another quantifier, and Python's re, which has no timeout, would hold the "
                "server for seconds on one sample that nearly matches; write that part with a character class "
                "([AB]+), possessive quantifiers (\\d++, *+) or an atomic group ((?>...))",
            )
        if verdict.output_format is None:
            raise fail("verdict.output_format", "a regex verdict needs its output's format (e.g. 'Score: {score}')")
    if winner and spec.scale not in (None, (0.0, 1.0)):
        raise fail("scale", "a winner verdict scores the winner 1 and the loser 0: leave scale out or give [0, 1]")
    if spec.scale is None and not winner:
        raise fail("scale", "give the verdict's scale, e.g. [1, 10]")
    low, high = spec.scale or (0.0, 1.0)
    if not low < high:
        raise fail("scale", f"low {low} must be below high {high}")
    if spec.guidance is not None:
        try:
            re.compile(spec.guidance)
        except re.error as exc:
            raise fail("guidance", f"does not compile: {exc}") from None
    judge = CustomJudge(
        name=spec.name,
        mode=spec.mode,
        scale=Scale(low, high),
        template=spec.template,
        sampling=Sampling(spec.sampling.temperature, spec.sampling.top_p, spec.sampling.max_tokens),
        system=spec.system,
        reference_format=spec.reference_format,
        rubric_format=spec.rubric_format,
        response_format=spec.response_format,
        response_separator=spec.response_separator,
        after=verdict.after,
        regex=verdict.regex,
        labels=verdict.labels,
        output_format=verdict.output_format,
        guide=spec.guidance,
        prompt_name=spec.template_name,
    )
    _self_check(judge, fail)
    return judge


def _self_check(judge: CustomJudge, fail: Any) -> None:
    """The profile's example outputs parse back to their scores (and match its guidance), and its
    prompt renders."""
    low, high = judge.scale.low, judge.scale.high
    counts = [SHOWN[judge.mode]] if judge.mode in SHOWN else [1, 2, 3]
    for n in counts:
        for scores in ([high] + [low] * (n - 1), [low] * (n - 1) + [high]):
            try:
                example = judge.example_output(scores)
            except (KeyError, IndexError, ValueError) as exc:
                raise fail("verdict.output_format", f"cannot be filled: {exc}") from None
            try:
                verdict = judge.parse(example, n)
            except ParseError as exc:
                raise fail("verdict", f"its own example output {example!r} does not parse: {exc}") from None
            expected = tuple(scores)
            if judge.winner_verdict:
                expected = (1.0, 0.0) if scores[0] >= scores[-1] else (0.0, 1.0)
            if verdict.scores != expected:
                raise fail("verdict", f"its own example output {example!r} reads {verdict.scores}, not {expected}")
            if judge.guide is not None and re.fullmatch(judge.guide, example) is None:
                raise fail("guidance", f"does not match the profile's own example output {example!r}")
        shown = [f"response number {i}" for i in range(n)]
        try:
            prompt = judge.render([Message("user", "question")], shown)
        except (KeyError, IndexError, ValueError) as exc:
            raise fail("template", f"cannot be filled: {exc}") from None
        if not prompt.user:
            raise fail("template", "renders an empty prompt")
