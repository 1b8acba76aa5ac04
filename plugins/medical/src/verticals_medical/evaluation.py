"""Metrics of an imaging model: AUROC, the operating point, confusion matrix, calibration, baselines.

* ``auroc``: binary — of the positive class; more classes — the macro average of one-vs-rest AUROCs,
  with ``auroc_per_class`` beside it.
* **Operating point** (binary): the highest threshold on P(positive) whose sensitivity on the
  *validation* split reaches the target (``target_sensitivity``, default 0.90). It is stored in the
  model and applied to test and at scoring; ``sensitivity`` and ``specificity`` on each split are
  measured at it. With more classes, the predicted class is the most probable one.
* ``confusion``: true class → predicted class → count, at the operating point.
* ``calibration``: Brier score, expected calibration error (10 equal-width bins) and the reliability
  curve of P(positive) (binary) or of the predicted class's probability (more classes).
* Baseline ``pixel_logistic``: logistic regression on the same images downsampled to 16 × 16 (block
  means of the model's pixels), fitted on the training split, scored on test: a model that cannot beat
  it has learned nothing about shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["auroc", "calibration", "classification_metrics", "operating_threshold", "pixel_logistic"]

BASELINE_SIDE = 16


def auroc(y: np.ndarray, probabilities: np.ndarray) -> tuple[float, dict[str, float] | None]:
    """``(auroc, per-class or None)`` of integer labels ``y`` and probabilities ``[N, C]``."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    classes = probabilities.shape[1]
    if classes == 2:
        if len(np.unique(y)) < 2:
            return float("nan"), None
        return float(roc_auc_score(y == 1, probabilities[:, 1])), None
    per: dict[str, float] = {}
    for k in range(classes):
        truth = y == k
        per[str(k)] = float(roc_auc_score(truth, probabilities[:, k])) if 0 < truth.sum() < len(y) else float("nan")
    values = [v for v in per.values() if not math.isnan(v)]
    return (float(np.mean(values)) if values else float("nan")), per


def operating_threshold(y: np.ndarray, score: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity (``score >= t`` among ``y == 1``) is at least ``target``."""
    import numpy as np

    positives = np.sort(score[y == 1])[::-1]
    if positives.size == 0:
        return 0.5
    k = max(1, math.ceil(target * positives.size))
    return float(positives[k - 1])


def calibration(correct: np.ndarray, confidence: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Brier score, ECE and the reliability curve (per non-empty bin: mean predicted probability, observed
    fraction, count) of ``confidence`` against 0/1 outcomes ``correct``."""
    import numpy as np

    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    curve: dict[str, dict[str, float]] = {}
    ece = 0.0
    for b in range(bins):
        pick = which == b
        if not pick.any():
            continue
        mean_p, mean_y = float(confidence[pick].mean()), float(correct[pick].mean())
        curve[f"{edges[b]:.1f}-{edges[b + 1]:.1f}"] = {"mean_predicted": mean_p, "fraction_positive": mean_y,
                                                        "count": float(pick.sum())}
        ece += pick.mean() * abs(mean_p - mean_y)
    brier = float(np.mean((confidence - correct) ** 2)) if correct.size else float("nan")
    return {"brier": brier, "ece": float(ece), "curve": curve}


def classification_metrics(y: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray,
                           classes: Sequence[str]) -> dict[str, Any]:
    """The metrics of the module docstring for one split (``predicted``: class indices)."""
    import numpy as np

    y = np.asarray(y, dtype=np.int64)
    out: dict[str, Any] = {"examples": float(y.size)}
    if y.size == 0:
        return out
    value, per = auroc(y, probabilities)
    out["auroc"] = value
    if per is not None:
        out["auroc_per_class"] = {classes[int(k)]: v for k, v in per.items()}
    out["accuracy"] = float(np.mean(predicted == y))
    out["confusion"] = {classes[t]: {classes[p]: int(np.sum((y == t) & (predicted == p))) for p in range(len(classes))}
                        for t in range(len(classes))}
    if len(classes) == 2:
        pos, neg = y == 1, y == 0
        out["sensitivity"] = float(np.mean(predicted[pos] == 1)) if pos.any() else float("nan")
        out["specificity"] = float(np.mean(predicted[neg] == 0)) if neg.any() else float("nan")
        out["calibration"] = calibration(pos.astype(np.float64), probabilities[:, 1])
    else:
        out["recall_per_class"] = {classes[k]: float(np.mean(predicted[y == k] == k)) if (y == k).any() else float("nan")
                                   for k in range(len(classes))}
        out["calibration"] = calibration((predicted == y).astype(np.float64), probabilities.max(axis=1))
    return out


def pixel_logistic(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   classes: int, seed: int = 0) -> dict[str, float]:
    """The ``pixel_logistic`` baseline: AUROC and accuracy on test (see the module docstring)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2 or test_y.size == 0:
        return {"auroc": float("nan"), "accuracy": float("nan")}
    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(max_iter=2000, C=0.1, random_state=seed)
    model.fit(scaler.transform(train_x), train_y)
    proba = np.zeros((test_x.shape[0], classes))
    proba[:, model.classes_] = model.predict_proba(scaler.transform(test_x))
    value, _ = auroc(test_y, proba)
    return {"auroc": value, "accuracy": float(np.mean(proba.argmax(axis=1) == test_y))}


def downsample(images: np.ndarray, side: int = BASELINE_SIDE) -> np.ndarray:
    """``[N, 1, S, S]`` uint8 → ``[N, side²]`` block means in ``[0, 1]`` (S a multiple of ``side``, else
    the last rows and columns are dropped)."""
    n, _, s, _ = images.shape
    block = max(1, s // side)
    cut = images[:, 0, : block * side, : block * side].astype("float32") / 255.0
    return cut.reshape(n, side, block, side, block).mean(axis=(2, 4)).reshape(n, side * side)
