import asyncio
import json
import random

import numpy as np
import pytest

from meta_rm.base import MetaRMError, Trajectory
from meta_rm.features import NUMERIC_FEATURES, featurize
from meta_rm.linear import ARTIFACT_FILE, LinearMetaRM, LinearModel, train_linear
from meta_rm.training.train import auc
from server.pipeline.domain import Message


def synthetic(n: int, seed: int) -> tuple[list[Trajectory], list[bool]]:
    """Correct samples reason about facts and separate the scores; wrong ones ramble and tie."""
    rng = random.Random(seed)
    out, labels = [], []
    for _ in range(n):
        good = rng.random() < 0.4
        words = rng.sample(["facts", "verified", "precise"] if good else ["nice", "vibes", "long"], 2)
        scores = (rng.randint(7, 10), rng.randint(1, 4)) if good else (rng.choice([(8, 8), (5, 6), (9, 9)]))
        reason = " ".join(words)
        box = f"\\boxed{{{scores[0]}, {scores[1]}}}"
        text = f"Specific Criteria: {reason}.\nAnalysis: {reason} matter.\nScores: {box}"
        out.append(Trajectory((Message("user", "q?"),), ("answer one", "answer two"), text, scores))
        labels.append(good)
    return out, labels


def test_features_have_one_column_per_name_and_a_normalised_hashed_part():
    ts, _ = synthetic(3, 0)
    numeric, hashed = featurize(ts, hash_bits=8)
    assert numeric.shape == (3, len(NUMERIC_FEATURES))
    assert hashed.shape == (3, 256)
    assert np.allclose(np.linalg.norm(hashed, axis=1), 1.0)


def test_features_are_stable_across_calls_and_ignore_the_scores_line_text():
    ts, _ = synthetic(1, 1)
    a = featurize(ts, 8)[1]
    b = featurize(ts, 8)[1]
    assert np.array_equal(a, b)


def test_trained_model_separates_held_out_synthetic_samples():
    train_x, train_y = synthetic(200, 2)
    test_x, test_y = synthetic(100, 3)
    model = train_linear(train_x, train_y, l2=1e-2, hash_bits=8)
    assert auc(model.logits(test_x).tolist(), test_y) > 0.95


def test_save_and_load_give_the_same_ratings(tmp_path):
    xs, ys = synthetic(60, 4)
    model = train_linear(xs, ys, l2=1e-2, hash_bits=8)
    model.metadata = {"grm_model": "embedded", "k": 8}
    model.save(tmp_path)
    loaded = LinearModel.load(tmp_path)
    assert np.allclose(loaded.logits(xs), model.logits(xs), atol=1e-4)
    assert loaded.metadata == {"grm_model": "embedded", "k": 8}


def test_training_needs_both_classes():
    xs, _ = synthetic(10, 5)
    with pytest.raises(ValueError, match="both classes"):
        train_linear(xs, [True] * 10, l2=1e-2)


def test_loading_a_foreign_or_stale_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(MetaRMError, match="cannot read"):
        LinearModel.load(tmp_path)
    (tmp_path / ARTIFACT_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(MetaRMError, match="not a grm-serve-linear-meta-rm"):
        LinearModel.load(tmp_path)
    xs, ys = synthetic(40, 6)
    train_linear(xs, ys, l2=1e-2, hash_bits=8).save(tmp_path)
    payload = json.loads((tmp_path / ARTIFACT_FILE).read_text())
    payload["numeric_features"] = payload["numeric_features"][:-1]
    (tmp_path / ARTIFACT_FILE).write_text(json.dumps(payload))
    with pytest.raises(MetaRMError, match="other features"):
        LinearModel.load(tmp_path)


def test_backend_refuses_to_score_before_start_and_scores_after(tmp_path):
    xs, ys = synthetic(40, 7)
    train_linear(xs, ys, l2=1e-2, hash_bits=8).save(tmp_path)
    rm = LinearMetaRM(tmp_path, "test")

    async def go():
        with pytest.raises(MetaRMError, match="not been started"):
            await rm.score(xs[:2])
        await rm.start()
        assert rm.healthy()
        return await rm.score(xs[:3])

    scores = asyncio.run(go())
    assert len(scores) == 3 and all(np.isfinite(scores))
