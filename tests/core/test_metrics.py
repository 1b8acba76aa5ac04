"""Metrics (against sklearn/scipy) and the default postprocessing (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from verticals import metrics as m
from verticals.postprocess import default_postprocess, sigmoid, softmax

sk = pytest.importorskip("sklearn.metrics")


@pytest.fixture
def binary():
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.3).astype(np.float32)
    # Rounded scores: many ties, the case naive AUC implementations get wrong.
    score = np.round(1 / (1 + np.exp(-(rng.normal(size=3000) + 1.2 * y - 0.8))), 2).astype(np.float32)
    return y, score


def test_binary_metrics_match_sklearn_with_ties(binary):
    y, s = binary
    assert m.auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert m.gini(y, s) == pytest.approx(2 * sk.roc_auc_score(y, s) - 1, abs=1e-12)
    assert m.brier(y, s) == pytest.approx(sk.brier_score_loss(y, s), rel=1e-6)  # sklearn sums in float32
    assert m.logloss(y, s) == pytest.approx(sk.log_loss(y, s), rel=1e-6)
    assert m.accuracy(y, s) == pytest.approx(sk.accuracy_score(y, s >= 0.5))


def test_ks_matches_the_two_sample_statistic(binary):
    stats = pytest.importorskip("scipy.stats")
    y, s = binary
    assert m.ks(y, s) == pytest.approx(stats.ks_2samp(s[y == 1], s[y == 0]).statistic, abs=1e-12)


def test_perfect_and_inverted_rankings():
    y = np.array([0, 0, 1, 1])
    assert m.auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert m.auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert m.auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert m.ks(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert m.ks(y, [0.5, 0.5, 0.5, 0.5]) == 0.0


def test_undefined_metrics_are_nan_not_errors():
    assert math.isnan(m.auc([1, 1, 1], [0.1, 0.5, 0.9]))
    assert math.isnan(m.ks([0, 0], [0.1, 0.5]))
    assert math.isnan(m.r2([2.0, 2.0], [1.0, 3.0]))
    assert math.isfinite(m.logloss([1, 0], [0.0, 1.0]))  # clipped, not infinite


def test_multiclass_and_regression_match_sklearn():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(500, 4))
    proba = softmax(logits)
    y = rng.integers(0, 4, 500)
    assert m.multiclass_logloss(y, proba) == pytest.approx(sk.log_loss(y, proba, labels=[0, 1, 2, 3]), rel=1e-9)
    assert m.multiclass_accuracy(y, proba) == pytest.approx(sk.accuracy_score(y, proba.argmax(1)))
    assert m.multiclass_accuracy(y, proba.argmax(1)) == m.multiclass_accuracy(y, proba)
    t, p = rng.normal(size=400), rng.normal(size=400)
    assert m.rmse(t, p) == pytest.approx(math.sqrt(sk.mean_squared_error(t, p)))
    assert m.mae(t, p) == pytest.approx(sk.mean_absolute_error(t, p))
    assert m.r2(t, p) == pytest.approx(sk.r2_score(t, p))


def test_default_metrics_by_task(binary):
    y, s = binary
    out = m.default_metrics("binary", y, s)
    assert set(out) == {"auc", "gini", "ks", "brier", "logloss", "accuracy", "positive_rate", "mean_score"}
    assert out["positive_rate"] == pytest.approx(y.mean())
    assert set(m.default_metrics("multiclass", [0, 1], softmax(np.eye(2)))) == {"accuracy", "logloss"}
    assert set(m.default_metrics("multiclass", [0, 1], np.array([0, 0]))) == {"accuracy"}
    assert set(m.default_metrics("regression", [1.0, 2.0], [1.0, 2.5])) == {"rmse", "mae", "r2"}
    with pytest.raises(ValueError, match="ranking"):
        m.default_metrics("ranking", y, s)


def test_sigmoid_and_softmax_are_stable():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype=np.float32)
    out = sigmoid(x)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[1:4], 1 / (1 + np.exp(-x[1:4].astype(np.float64))), rtol=1e-6)
    assert out[0] == 0.0 and out[-1] == 1.0
    p = softmax(np.array([[1000.0, 1000.0, -1000.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0])


def test_default_postprocess_by_task():
    logits = np.array([[0.0], [2.0], [-2.0]], dtype=np.float32)
    binary = default_postprocess("binary", {"logits": logits, "other": np.zeros((3, 5))})
    assert binary.columns == ["score"]
    np.testing.assert_allclose(binary["score"].to_numpy(), sigmoid(logits[:, 0]))
    multi = default_postprocess("multiclass", {"logits": np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]])})
    assert multi["label"].to_list() == [1, 0]
    np.testing.assert_allclose(multi["score"].to_numpy(), softmax(np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]])).max(1))
    reg = default_postprocess("regression", {"pred": np.array([1.5, -2.0])})
    assert reg["score"].to_list() == [1.5, -2.0]
    assert default_postprocess("binary", {"logits": np.zeros((0,), np.float32)}).height == 0
