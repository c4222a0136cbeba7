"""Read one Nemotron GenRM sample: ``score_1``, ``score_2`` (1-5) and ``ranking`` (1-6) (pure).

Two output formats, one reader:

* JSON (Qwen3-Nemotron-235B-A22B-GenRM and -2603): NeMo Gym's ``parse_genrm_output``
  (``resources_servers/genrm_compare/utils.py`` @ 07d6b0d0, lines 186-311) picks the object: the
  first object in a fenced ````` ```json ````` block that holds one of the three keys with
  ``float()``-readable values, else the last such top-level ``{...}`` of the text; a
  ``{"rubric_evaluations": [...], "overall": {...}}`` object is read through ``"overall"``.
* Boxed sections (Llama-3_3-Nemotron-Super-49B-GenRM): NeMo-RL's ``_parse_genrm_output``
  (``nemo_rl/environments/genrm_pairwise_environment.py`` @ 27bd6a68, lines 234-279): the first
  ``[The Begin of Individual Scores]...[The End of Individual Scores]`` section's last
  ``\\boxed{a, b}`` and the first ``[The Begin of Ranking Score]...`` section's last ``\\boxed{r}``.
  Read only when the text holds no JSON object Gym would pick.

A thinking model's verdict follows its reasoning: only the text after the last ``</think>`` is read
(NeMo-RL splits on it the same way); a text that opens ``<think>`` and never closes it has no verdict.

Where upstream falls back to defaults (Gym: 3.0, 3.0, 3.5 for an unreadable sample and for each
missing key; NeMo-RL: the same for a missing section), this module raises :class:`ParseError`: a
sample missing a key, with a value that is not a number, or out of range is dropped and counted,
never guessed. Values are read as Gym reads them (``float()``: ``4``, ``4.0`` and ``"4"`` alike) but
must be finite and within range; ``true``/``false`` are not scores.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from server.pipeline.judges.base import ParseError, Scale, Slot, integer_values

SCORE = Scale(1, 5)  # score_1, score_2: individual helpfulness
RANKING = Scale(1, 6)  # 1 = response 1 much better .. 6 = response 2 much better
KEYS = ("score_1", "score_2", "ranking")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

_FENCED = re.compile(r"```json\s*([\s\S]*?)\s*```", flags=re.IGNORECASE)  # Gym's strategy 1, verbatim
_INDIVIDUAL = re.compile(r"\[The Begin of Individual Scores\](.*?)\[The End of Individual Scores\]", re.DOTALL)
_RANKING = re.compile(r"\[The Begin of Ranking Score\](.*?)\[The End of Ranking Score\]", re.DOTALL)


@dataclass(frozen=True)
class Reading:
    """What one sample says: the two scores, the ranking, and the text before the verdict."""

    score_1: float
    score_2: float
    ranking: float
    rationale: str


def verdict_part(text: str) -> str:
    """The text after the reasoning: after the last ``</think>``, or all of it when there is none.

    Raises:
        ParseError: for a text that opens ``<think>`` and never closes it (cut inside its reasoning).
    """
    if THINK_CLOSE in text:
        return text.rsplit(THINK_CLOSE, 1)[1]
    if text.lstrip().startswith(THINK_OPEN):
        raise ParseError("the reasoning never closed (<think> without </think>): no verdict")
    return text


def json_objects(text: str) -> list[tuple[int, str]]:
    """Top-level ``{...}`` spans of ``text`` by brace counting, skipping braces inside strings, with
    their start offsets (Gym's ``_find_json_objects``, same scan: an unclosed ``{`` is passed over)."""
    found: list[tuple[int, str]] = []
    i = 0
    while i < len(text):
        if text[i] == "{":
            depth, in_string, escaped = 0, False, False
            for j in range(i, len(text)):
                ch = text[j]
                if escaped:
                    escaped = False
                elif ch == "\\" and in_string:
                    escaped = True
                elif ch == '"':
                    in_string = not in_string
                elif in_string:
                    continue
                elif ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        found.append((i, text[i : j + 1]))
                        i = j
                        break
        i += 1
    return found


def _floatable(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _candidate(span: str) -> dict[str, Any] | None:
    """The object Gym's ``_try_parse`` accepts from ``span`` (unwrapped from ``"overall"``), or None:
    a JSON object holding at least one key, every key it holds readable by ``float()``."""
    try:
        parsed = json.loads(span)
    except json.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    if isinstance(parsed.get("overall"), dict):
        parsed = parsed["overall"]
    present = [k for k in KEYS if k in parsed]
    if not present or not all(_floatable(parsed[k]) for k in present):
        return None
    return parsed


def _picked(text: str) -> tuple[int, int, int, dict[str, Any]] | None:
    """What :func:`pick_json` reads: where the verdict (or its fence) starts, the object's own start and
    end, and the object."""
    for fence in _FENCED.finditer(text):
        for start, span in json_objects(fence.group(1)):
            obj = _candidate(span)
            if obj is not None:
                at = fence.start(1) + start
                return fence.start(), at, at + len(span), obj  # the verdict starts at its fence
    last = None
    for start, span in json_objects(text):
        obj = _candidate(span)
        if obj is not None:
            last = start, start, start + len(span), obj
    return last


def pick_json(text: str) -> tuple[int, dict[str, Any]] | None:
    """The object Gym's ``parse_genrm_output`` reads from ``text`` and where it (or its fence) starts,
    or None."""
    picked = _picked(text)
    return None if picked is None else (picked[0], picked[3])


def _value(value: Any, key: str, scale: Scale) -> float:
    if isinstance(value, bool):
        raise ParseError(f"{key} is {json.dumps(value)}, not a score")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParseError(f"{key} is not a number: {value!r}") from None
    if not math.isfinite(number) or not scale.low <= number <= scale.high:
        raise ParseError(f"{key} = {value!r} is outside {scale.low:g}..{scale.high:g}")
    return number


def read_json(obj: dict[str, Any]) -> tuple[float, float, float]:
    """The three values of the picked object, all present and in range.

    Raises:
        ParseError: for a missing key (Gym would fill it with its default) or a bad value.
    """
    missing = [k for k in KEYS if k not in obj]
    if missing:
        raise ParseError(f"the verdict lacks {', '.join(missing)}")
    return (
        _value(obj["score_1"], "score_1", SCORE),
        _value(obj["score_2"], "score_2", SCORE),
        _value(obj["ranking"], "ranking", RANKING),
    )


def boxed_content(section: str) -> str | None:
    """The content of the last ``\\boxed{...}`` of ``section``, braces matched (NeMo-RL's
    ``extract_answer_from_box``, ``nemo_rl/environments/utils.py`` @ 27bd6a68, lines 64-99)."""
    idx = section.rfind("\\boxed")
    if idx < 0:
        return None
    depth = 0
    for i in range(idx, len(section)):
        if section[i] == "{":
            depth += 1
        elif section[i] == "}":
            depth -= 1
            if depth == 0:
                box = section[idx : i + 1]
                return box[len("\\boxed{") : -1] if box.startswith("\\boxed{") else None
    return None


def read_boxed(text: str) -> tuple[int, tuple[float, float, float]] | None:
    """The 49B GenRM's boxed sections and where they start, or None when the text has neither.

    Raises:
        ParseError: for one section without the other, or a box that does not hold the values.
    """
    individual, ranking = _INDIVIDUAL.search(text), _RANKING.search(text)
    if individual is None and ranking is None:
        return None
    if individual is None or ranking is None:
        raise ParseError(f"the {'ranking' if ranking is None else 'individual scores'} section is missing")
    scores = boxed_content(individual.group(1).strip())
    if scores is None or scores.count(",") != 1:
        raise ParseError(f"the individual scores section has no \\boxed{{a, b}}: {individual.group(1).strip()!r}")
    first, second = scores.split(",")
    rank = boxed_content(ranking.group(1).strip())
    if rank is None:
        raise ParseError(f"the ranking section has no \\boxed{{r}}: {ranking.group(1).strip()!r}")
    values = (
        _value(first.strip(), "score_1", SCORE),
        _value(second.strip(), "score_2", SCORE),
        _value(rank.strip(), "ranking", RANKING),
    )
    return min(individual.start(), ranking.start()), values


def parse(text: str) -> Reading:
    """Read one sample (see the module docstring).

    Raises:
        ParseError: when no complete, in-range verdict can be read.
    """
    verdict = verdict_part(text)
    picked = pick_json(verdict)
    if picked is not None:
        start, values = picked[0], read_json(picked[1])
    else:
        boxed = read_boxed(verdict)
        if boxed is None:
            raise ParseError("no verdict: neither a JSON object with score_1/score_2/ranking nor boxed score sections")
        start, values = boxed
    head = text[: len(text) - len(verdict) + start]
    rationale = head.replace(THINK_OPEN, "").replace(THINK_CLOSE, "").strip()
    return Reading(*values, rationale=rationale)


def value_slots(text: str) -> tuple[Slot, ...]:
    """Where :func:`parse` reads ``score_1``, ``score_2`` and ``ranking`` in ``text`` (the last of each
    key in the JSON object it picks, or the boxes of the 49B's sections); empty when a value's text
    cannot be found as the number :func:`parse` read (then it has no soft vote).

    Raises:
        ParseError: as :func:`parse`.
    """
    reading = parse(text)
    verdict = verdict_part(text)
    offset = len(text) - len(verdict)
    picked = _picked(verdict)
    spans: list[tuple[int, int]] = []
    if picked is not None:
        _, start, end, _ = picked
        for key in KEYS:
            found = list(re.finditer(rf'"{key}"\s*:\s*"?\s*([-+]?[\d.]+)', verdict[start:end]))
            if not found:
                return ()
            spans.append((offset + start + found[-1].start(1), offset + start + found[-1].end(1)))
    else:
        for section in (_INDIVIDUAL.search(verdict), _RANKING.search(verdict)):
            assert section is not None  # parse read both
            inner = _box_inner(verdict, section.start(1), section.end(1))
            if inner is None:
                return ()
            at = inner[0]
            for entry in verdict[inner[0] : inner[1]].split(","):
                lead = len(entry) - len(entry.lstrip())
                spans.append((offset + at + lead, offset + at + lead + len(entry.strip())))
                at += len(entry) + 1
    values = (reading.score_1, reading.score_2, reading.ranking)
    if len(spans) != 3 or any(_number(text[a:b]) != v for (a, b), v in zip(spans, values, strict=True)):
        return ()
    return (
        Slot(*spans[0], integer_values(SCORE), "score", 0),
        Slot(*spans[1], integer_values(SCORE), "score", 1),
        Slot(*spans[2], integer_values(RANKING), "preference"),
    )


def _box_inner(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The content of the last ``\\boxed{...}`` in ``text[start:end]``, as offsets into ``text``."""
    idx = text.rfind("\\boxed{", start, end)
    if idx < 0:
        return None
    content = idx + len("\\boxed{")
    depth = 1
    for i in range(content, end):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return content, i
    return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
