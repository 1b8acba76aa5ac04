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
    assert set(out) == {"auc", "gini", "ks", "pr_auc", "brier", "logloss", "accuracy", "positive_rate",
                        "mean_score"}
    assert out["positive_rate"] == pytest.approx(y.mean())
    assert set(m.default_metrics("multiclass", [0, 1], softmax(np.eye(2)))) == {"accuracy", "logloss", "macro_auc"}
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


# -- hand-computed small cases ------------------------------------------------------------------------

def test_binary_metrics_on_a_hand_computed_case():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    # Positive-negative pairs ranked right: (0.35 > 0.1), (0.8 > 0.1), (0.8 > 0.4); wrong: (0.35 < 0.4).
    assert m.auc(y, s) == pytest.approx(3 / 4)
    assert m.gini(y, s) == pytest.approx(0.5)
    # CDF gaps after 0.1, 0.35, 0.4, 0.8: |0 - .5|, |.5 - .5|, |.5 - 1|, |1 - 1|.
    assert m.ks(y, s) == pytest.approx(0.5)
    # Ranked 0.8 (hit: precision 1, recall .5), 0.4 (miss), 0.35 (hit: precision 2/3, recall 1).
    assert m.average_precision(y, s) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m.pr_auc is m.average_precision
    assert m.brier(y, s) == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    assert m.logloss(y, s) == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)
    assert m.accuracy(y, s) == pytest.approx(3 / 4)  # only 0.35 is on the wrong side of 0.5


def test_tied_scores_count_one_half_and_form_one_threshold():
    y = np.array([0, 1, 0, 1])
    s = np.array([0.5, 0.5, 0.2, 0.9])
    assert m.auc(y, s) == pytest.approx(3.5 / 4)  # the tied pair counts 1/2
    assert m.ks(y, s) == pytest.approx(0.5)  # never evaluated between the two 0.5s
    # Thresholds 0.9 (precision 1, recall .5) and 0.5 (both tied rows at once: precision 2/3, recall 1).
    assert m.average_precision(y, s) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_degenerate_binary_inputs_are_nan():
    for metric in (m.auc, m.ks, m.average_precision, m.gini):
        assert math.isnan(metric([1, 1], [0.2, 0.9])), metric.__name__
        assert math.isnan(metric([0, 1], [0.2, float("nan")])), metric.__name__
        assert math.isnan(metric([], [])), metric.__name__
    assert math.isnan(m.brier([], []))
    assert math.isnan(m.brier([0, 1], [-0.5, 2.0]))  # not probabilities
    assert m.brier([1, 1], [1.0, 0.5]) == pytest.approx(0.125)  # one class is fine for Brier
    assert math.isnan(m.logloss([0, 1], [0.5, float("nan")]))
    assert math.isnan(m.accuracy([], []))
    with pytest.raises(ValueError, match="3 values but y_score has 2"):
        m.auc([0, 1, 1], [0.1, 0.2])


def test_regression_metrics_on_a_hand_computed_case():
    t, p = [1.0, 2.0, 3.0], [1.0, 2.0, 5.0]
    assert m.rmse(t, p) == pytest.approx(math.sqrt(4 / 3))
    assert m.mae(t, p) == pytest.approx(2 / 3)
    assert m.r2(t, p) == pytest.approx(1 - 4 / 2)  # residual SS 4, total SS 2
    assert math.isnan(m.r2([3.0], [3.0]))
    assert math.isnan(m.rmse([], []))


PROBA = np.array([[0.7, 0.2, 0.1],
                  [0.2, 0.5, 0.3],
                  [0.1, 0.3, 0.6],
                  [0.3, 0.4, 0.3],
                  [0.5, 0.3, 0.2],
                  [0.2, 0.2, 0.6]])
LABELS = np.array([0, 1, 2, 0, 1, 2])


def test_per_class_auc_is_one_vs_rest():
    out = m.per_class_auc(LABELS, PROBA, classes=["normal", "benign", "malignant"])
    assert list(out) == ["normal", "benign", "malignant"]
    # normal: 0.7 beats all 4 negatives, 0.3 beats 3 of them (not 0.5) -> 7/8.
    # benign: 0.5 beats all 4, 0.3 beats two 0.2s, ties one 0.3, loses to 0.4 -> 6.5/8.
    # malignant: both 0.6 beat every negative -> 1.
    assert out == pytest.approx({"normal": 7 / 8, "benign": 6.5 / 8, "malignant": 1.0})
    assert m.macro_auc(LABELS, PROBA) == pytest.approx((7 / 8 + 6.5 / 8 + 1) / 3)
    assert m.macro_auc(LABELS, PROBA) == pytest.approx(
        sk.roc_auc_score(LABELS, PROBA, multi_class="ovr", average="macro"))
    assert list(m.per_class_auc(LABELS, PROBA)) == ["0", "1", "2"]


def test_per_class_auc_of_an_absent_class_is_nan_not_an_error():
    out = m.per_class_auc([0, 0, 1, 1], PROBA[:4])
    # Class 0 (rows 0, 1: 0.7, 0.2) against rows 2, 3 (0.1, 0.3): 0.7 wins twice, 0.2 once -> 3/4.
    assert math.isnan(out["2"]) and out["0"] == pytest.approx(3 / 4)
    assert m.macro_auc([0, 0, 1, 1], PROBA[:4]) == pytest.approx((out["0"] + out["1"]) / 2)
    with pytest.raises(ValueError, match="2 class names for 3"):
        m.per_class_auc(LABELS, PROBA, classes=["a", "b"])
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        m.per_class_auc(LABELS, PROBA[:, 0])


def _dcg(hits):
    return sum(1 / math.log2(i + 2) for i, hit in enumerate(hits) if hit)


TOP3 = np.array([[5, 3, 9],     # held out {3, 7}: hit at position 1
                 [1, 2, 4],     # held out {1}: hit at position 0
                 [8, -1, -1],   # nothing held out: not counted
                 [6, -1, -1]])  # held out {2, 6}; padding never credits item 2
HELD = [[3, 7], np.array([1]), [], {2, 6}]


def test_ndcg_and_recall_at_k_on_hand_computed_lists():
    ndcg = [_dcg([0, 1, 0]) / _dcg([1, 1]), 1.0, _dcg([1, 0, 0]) / _dcg([1, 1])]
    assert m.ndcg_at_k(TOP3, HELD) == pytest.approx(sum(ndcg) / 3)
    assert m.recall_at_k(TOP3, HELD) == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    # k = 1: only the first item counts; the ideal list has one hit.
    assert m.ndcg_at_k(TOP3, HELD, k=1) == pytest.approx((0 + 1 + 1) / 3)
    assert m.recall_at_k(TOP3, HELD, k=1) == pytest.approx((0 + 1 + 1 / 2) / 3)


def test_ranking_metrics_take_item_names_and_count_a_repeated_item_once():
    assert m.ndcg_at_k([["a", "b"]], [["b"]]) == pytest.approx(_dcg([0, 1]))
    assert m.recall_at_k([["a", "b"]], [["b", "c"]]) == pytest.approx(1 / 2)
    assert m.ndcg_at_k([[4, 4]], [[4, 5]]) == pytest.approx(1 / _dcg([1, 1]))  # the repeat is a miss
    assert math.isnan(m.ndcg_at_k([[1, 2]], [[]]))
    assert math.isnan(m.recall_at_k(np.zeros((0, 3), dtype=int), []))
    with pytest.raises(ValueError, match="2 top-k lists but 1 held-out"):
        m.ndcg_at_k([[1], [2]], [[1]])
    with pytest.raises(ValueError, match="k must be at least 1"):
        m.recall_at_k([[1]], [[1]], k=0)


def test_calibration_curve_bins_counts_and_ece():
    y = [0, 0, 1, 1, 1, 0]
    s = [0.05, 0.15, 0.15, 0.65, 0.95, 0.95]
    out = m.calibration_curve(y, s, n_bins=2)
    assert out["bin_lower"] == [0.0, 0.5] and out["bin_upper"] == [0.5, 1.0]
    assert out["count"] == [3, 3]
    assert out["mean_predicted"] == pytest.approx([0.35 / 3, 2.55 / 3])
    assert out["fraction_positive"] == pytest.approx([1 / 3, 2 / 3])
    assert out["ece"] == pytest.approx(0.5 * abs(1 / 3 - 0.35 / 3) + 0.5 * abs(2 / 3 - 2.55 / 3))
    # Four bins: the second is empty and left out; the lists stay aligned.
    four = m.calibration_curve(y, s, n_bins=4)
    assert four["bin_lower"] == [0.0, 0.5, 0.75] and four["count"] == [3, 1, 2]
    assert four["fraction_positive"] == pytest.approx([1 / 3, 1.0, 1 / 2])
    # A value on an inner edge belongs to the lower bin, as in scikit-learn.
    assert m.calibration_curve([0, 1], [0.5, 0.5], n_bins=2)["bin_upper"] == [0.5]


def test_calibration_curve_quantile_strategy_and_bad_input(binary):
    y, s = binary
    out = m.calibration_curve(y, s, n_bins=5, strategy="quantile")
    assert sum(out["count"]) == len(y)
    assert len(out["count"]) == len(out["mean_predicted"]) == len(out["fraction_positive"])
    assert 0 <= out["ece"] < 0.5
    assert math.isnan(m.calibration_curve([], [])["ece"])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        m.calibration_curve([0, 1], [0.2, 1.5])
    with pytest.raises(ValueError, match="'uniform' or 'quantile'"):
        m.calibration_curve([0, 1], [0.2, 0.5], strategy="kmeans")


def test_importing_metrics_does_not_import_sklearn():
    import subprocess
    import sys

    code = "import sys, verticals.metrics; sys.exit('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_ndcg_matches_the_textbook_formula_on_random_lists():
    rng = np.random.default_rng(3)
    top = np.stack([rng.permutation(50)[:10] for _ in range(40)])
    held = [rng.choice(50, size=rng.integers(0, 6), replace=False) for _ in range(40)]
    want = [_dcg([item in set(h) for item in row]) / _dcg([1] * min(10, len(h)))
            for row, h in zip(top, held, strict=True) if len(h)]
    assert m.ndcg_at_k(top, held) == pytest.approx(np.mean(want), abs=1e-12)
    recall = [len(set(row) & set(h)) / len(h) for row, h in zip(top, held, strict=True) if len(h)]
    assert m.recall_at_k(top, held) == pytest.approx(np.mean(recall), abs=1e-12)
