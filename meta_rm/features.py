"""Features of one GRM sample for the embedded linear meta RM (pure, numpy).

Two parts, both computed from the sample alone (the meta RM is pointwise, as in the paper):

* a few numeric features of the sample's scores and of the responses it favoured: score spread and
  ties, where in the shown order the top score sits (a positionally biased judge is less
  trustworthy when it favours its usual slot), how long, how on-topic and how refusing the favoured
  response is compared with the others, and how degenerate the output text is;
* hashed word unigrams and bigrams of the sample's principles and critique (``2**hash_bits`` buckets,
  log-scaled and L2-normalised), so the model can learn which kinds of reasoning go with right scores.

Hashing uses CRC-32, not Python's salted ``hash``, so features are stable across processes.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import zlib
from collections.abc import Sequence

import numpy as np

from meta_rm.base import Trajectory

_WORD = re.compile(r"[a-z0-9']+")
_REFUSAL = re.compile(r"\b(i can(?:no|')t|i cannot|i'm sorry|i am sorry|i won't|as an ai|i'm not able|i am not able)\b")
_POSITIONS = 4

NUMERIC_FEATURES = (
    "spread",
    "tie",
    "max",
    "min",
    "mean",
    *(f"top_at_{i}" for i in range(_POSITIONS)),
    "log_len_critique",
    "log_len_principles",
    "unique_word_ratio",
    "digit_ratio",
    "top_rel_length",
    "top_abs_rel_length",
    "top_query_overlap",
    "top_refusal",
    "critique_names_top",
    "n_responses",
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


# The k samples of an item share its query and responses: their word sets and refusal flags are
# computed once per text, not once per sample (the meta RM runs on the server's event loop).
@functools.lru_cache(maxsize=256)
def _word_set(text: str) -> frozenset[str]:
    return frozenset(_words(text))


@functools.lru_cache(maxsize=256)
def _refuses(text: str) -> float:
    return 1.0 if _REFUSAL.search(text.lower()) else 0.0


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _reasoning_text(output: str) -> str:
    """The output without its final ``Scores:`` line (the scores enter as numeric features)."""
    cut = output.rfind("Scores:")
    return output[:cut] if cut >= 0 else output


def numeric_features(t: Trajectory) -> list[float]:
    """The numeric features, in ``NUMERIC_FEATURES`` order."""
    scores = t.scores
    n = len(scores)
    hi, lo = max(scores), min(scores)
    tie = hi == lo
    top = scores.index(hi)
    others = [i for i in range(n) if i != top]

    reasoning = _reasoning_text(t.output)
    critique_at = reasoning.find("Analysis:")
    principles = reasoning[:critique_at] if critique_at >= 0 else reasoning
    critique = reasoning[critique_at:] if critique_at >= 0 else ""
    words = _words(t.output)

    lengths = [len(r) for r in t.responses]
    rel = math.log((lengths[top] + 1) / (sum(lengths[i] for i in others) / max(len(others), 1) + 1)) if others else 0.0
    query = _word_set(t.messages[-1].content)
    overlaps = [_jaccard(query, _word_set(r)) for r in t.responses]
    refusals = [_refuses(r) for r in t.responses]
    mean_other = (lambda v: sum(v[i] for i in others) / len(others)) if others else (lambda v: 0.0)

    position = [0.0] * _POSITIONS
    if not tie:
        position[min(top, _POSITIONS - 1)] = 1.0
    sign = 0.0 if tie else 1.0  # favoured-response features mean nothing when nothing is favoured
    return [
        (hi - lo) / 9,
        1.0 if tie else 0.0,
        hi / 10,
        lo / 10,
        sum(scores) / n / 10,
        *position,
        math.log1p(len(critique)) / 8,
        math.log1p(len(principles)) / 8,
        len(set(words)) / len(words) if words else 0.0,
        (sum(map(str.isdigit, t.output)) + t.output.count(",")) / max(len(t.output), 1),
        sign * rel,
        sign * abs(rel),
        sign * (overlaps[top] - mean_other(overlaps)),
        sign * (refusals[top] - mean_other(refusals)),
        1.0 if f"response {top + 1}" in critique.lower() else 0.0,
        n / 10,
    ]


def hashed_features(text: str, hash_bits: int) -> np.ndarray:
    """Log-scaled, L2-normalised counts of hashed word unigrams and bigrams."""
    dim = 1 << hash_bits
    words = _words(text)
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    buckets = [zlib.crc32(g.encode()) & (dim - 1) for g in grams]
    vec = np.bincount(np.asarray(buckets, dtype=np.int64), minlength=dim).astype(np.float32)
    np.log1p(vec, out=vec)
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def featurize(trajectories: Sequence[Trajectory], hash_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(numeric matrix, hashed matrix) for a batch of trajectories."""
    numeric = np.array([numeric_features(t) for t in trajectories], dtype=np.float64).reshape(
        len(trajectories), len(NUMERIC_FEATURES)
    )
    hashed = np.zeros((len(trajectories), 1 << hash_bits))
    for row, t in enumerate(trajectories):
        hashed[row] = hashed_features(_reasoning_text(t.output), hash_bits)
    return numeric, hashed
