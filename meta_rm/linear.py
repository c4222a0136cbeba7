"""The embedded meta RM: logistic regression over :mod:`meta_rm.features`, numpy only.

It is small (a JSON file of a few hundred kB), trains in seconds on CPU and rates a sample in well
under a millisecond, so guided voting adds nothing noticeable to a request on the embedded default.
The artifact is a folder holding ``meta_rm.json``: weights, feature settings and the metadata of the
run that trained it (GRM, template, data files and hashes, k, seed, metrics).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meta_rm.base import MetaRMError, MetaRMInfo, Trajectory
from meta_rm.features import NUMERIC_FEATURES, featurize

ARTIFACT_FILE = "meta_rm.json"
FORMAT = "grm-serve-linear-meta-rm"
FORMAT_VERSION = 1


@dataclass
class LinearModel:
    """Standardised numeric features and hashed text features, one logistic layer."""

    hash_bits: int
    weights: np.ndarray  # numeric weights followed by hashed weights
    bias: float
    mean: np.ndarray  # of the numeric features, on the training set
    scale: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def design(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
        numeric, hashed = featurize(trajectories, self.hash_bits)
        return np.hstack([(numeric - self.mean) / self.scale, hashed])

    def logits(self, trajectories: Sequence[Trajectory]) -> np.ndarray:
        if not trajectories:
            return np.zeros(0)
        return self.design(trajectories) @ self.weights + self.bias

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "numeric_features": list(NUMERIC_FEATURES),
            "hash_bits": self.hash_bits,
            "bias": round(float(self.bias), 6),
            "mean": [round(float(x), 6) for x in self.mean],
            "scale": [round(float(x), 6) for x in self.scale],
            "weights": [round(float(x), 6) for x in self.weights],
            "metadata": self.metadata,
        }
        path = folder / ARTIFACT_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: Path) -> LinearModel:
        """Read an artifact folder.

        Raises:
            MetaRMError: if the file is missing, of another format, or built for other features.
        """
        path = folder / ARTIFACT_FILE
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise MetaRMError(f"cannot read the meta-RM artifact {path.name} in {folder.name}: {exc}") from None
        if payload.get("format") != FORMAT or payload.get("format_version") != FORMAT_VERSION:
            raise MetaRMError(f"{path.name} is not a {FORMAT} v{FORMAT_VERSION} artifact")
        if payload.get("numeric_features") != list(NUMERIC_FEATURES):
            raise MetaRMError(f"{path.name} was trained on other features; retrain it with grm-meta-rm train")
        weights = np.asarray(payload["weights"], dtype=np.float64)
        if weights.shape != (len(NUMERIC_FEATURES) + (1 << payload["hash_bits"]),):
            raise MetaRMError(f"{path.name} has {weights.shape[0]} weights, which does not match its features")
        return cls(
            hash_bits=int(payload["hash_bits"]),
            weights=weights,
            bias=float(payload["bias"]),
            mean=np.asarray(payload["mean"], dtype=np.float64),
            scale=np.asarray(payload["scale"], dtype=np.float64),
            metadata=payload.get("metadata", {}),
        )


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float, *, steps: int = 1500, lr: float = 0.05
) -> tuple[np.ndarray, float]:
    """Binary cross-entropy + ``l2`` * ||w||^2 / 2, full-batch Adam from zero (deterministic)."""
    n, d = x.shape
    w, b = np.zeros(d), 0.0
    m_w, v_w, m_b, v_b = np.zeros(d), np.zeros(d), 0.0, 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    # Weight positives and negatives equally: correct samples are rare for a weak GRM.
    pos = max(float(y.sum()), 1.0)
    neg = max(float(n - y.sum()), 1.0)
    sample_w = np.where(y > 0.5, n / (2 * pos), n / (2 * neg))
    for t in range(1, steps + 1):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        err = (p - y) * sample_w / n
        g_w = x.T @ err + l2 * w
        g_b = float(err.sum())
        m_w = beta1 * m_w + (1 - beta1) * g_w
        v_w = beta2 * v_w + (1 - beta2) * g_w**2
        m_b = beta1 * m_b + (1 - beta1) * g_b
        v_b = beta2 * v_b + (1 - beta2) * g_b**2
        correction1, correction2 = 1 - beta1**t, 1 - beta2**t
        w -= lr * (m_w / correction1) / (np.sqrt(v_w / correction2) + eps)
        b -= lr * (m_b / correction1) / (np.sqrt(v_b / correction2) + eps)
    return w, b


def train_linear(
    trajectories: Sequence[Trajectory], labels: Sequence[bool], *, l2: float, hash_bits: int = 12
) -> LinearModel:
    """Fit the embedded meta RM on labelled trajectories.

    Raises:
        ValueError: if there are no trajectories or only one class.
    """
    y = np.asarray(labels, dtype=np.float64)
    if len(trajectories) == 0 or y.min() == y.max():
        raise ValueError("training needs trajectories of both classes (some correct, some not)")
    numeric, hashed = featurize(trajectories, hash_bits)
    mean = numeric.mean(axis=0)
    scale = numeric.std(axis=0)
    scale[scale < 1e-9] = 1.0
    x = np.hstack([(numeric - mean) / scale, hashed])
    w, b = fit_logistic(x, y, l2)
    return LinearModel(hash_bits=hash_bits, weights=w, bias=b, mean=mean, scale=scale)


class LinearMetaRM:
    """The :class:`~meta_rm.base.MetaRM` backend of a linear artifact (CPU, in-process).

    Args:
        folder: the artifact folder (holding ``meta_rm.json``).
        name: what ``/v1/info`` calls it.
    """

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self._model: LinearModel | None = None

    @property
    def info(self) -> MetaRMInfo:
        meta = self._model.metadata if self._model is not None else {}
        details: dict[str, str] = {k: str(meta[k]) for k in ("grm_model", "template", "k", "trained_at") if k in meta}
        return MetaRMInfo(self.name, "linear", details)

    async def start(self) -> None:
        self._model = LinearModel.load(self.folder)

    async def score(self, trajectories: Sequence[Trajectory]) -> list[float]:
        if self._model is None:
            raise MetaRMError("the meta RM has not been started")
        return [float(x) for x in self._model.logits(trajectories)]

    def healthy(self) -> bool:
        return self._model is not None

    async def shutdown(self) -> None:
        self._model = None
