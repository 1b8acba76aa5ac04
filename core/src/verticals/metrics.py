"""Evaluation metrics in plain numpy (no sklearn at run time; the tests compare against it).

Conventions: ``y_true`` holds the encoded target (0/1 for binary, class index for multiclass, value for
regression); ``y_score`` is the pipeline's score column (probability of the positive class for
binary). Metrics that are undefined on the data (AUC with one class present, R² of a constant target)
are ``nan`` rather than an exception, so one degenerate split does not stop a training run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "accuracy",
    "auc",
    "brier",
    "default_metrics",
    "gini",
    "ks",
    "logloss",
    "mae",
    "multiclass_accuracy",
    "multiclass_logloss",
    "r2",
    "rmse",
]

#: Probabilities are clipped to [EPS, 1 - EPS] in log losses so a confident mistake costs a finite amount.
EPS = 1e-15


def _arrays(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if t.shape != s.shape:
        raise ValueError(f"y_true has {t.size} values but y_score has {s.size}")
    return t, s


def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve from average ranks (Mann-Whitney U), so tied scores count one half."""
    import numpy as np

    t, s = _arrays(y_true, y_score)
    pos = t > 0.5
    n_pos = int(pos.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # Average rank (1-based) of each run of equal scores.
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def gini(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Gini coefficient (accuracy ratio) = 2·AUC − 1, the credit-scoring convention."""
    return 2.0 * auc(y_true, y_score) - 1.0


def ks(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic: the largest gap between the score CDFs of positives and negatives.

    Evaluated only at distinct score values, so tied scores never split between the two sides.
    """
    import numpy as np

    t, s = _arrays(y_true, y_score)
    pos = t > 0.5
    n_pos = int(pos.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s, sorted_pos = s[order], pos[order]
    cum_pos = np.cumsum(sorted_pos) / n_pos
    cum_neg = np.cumsum(~sorted_pos) / n_neg
    last_of_run = np.r_[sorted_s[1:] != sorted_s[:-1], True]
    return float(np.max(np.abs(cum_pos - cum_neg)[last_of_run]))


def brier(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean squared error of the predicted probability."""
    import numpy as np

    t, s = _arrays(y_true, y_score)
    return float(np.mean((s - t) ** 2)) if t.size else float("nan")


def logloss(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Binary cross-entropy of probabilities clipped to ``[EPS, 1 - EPS]``."""
    import numpy as np

    t, s = _arrays(y_true, y_score)
    if not t.size:
        return float("nan")
    p = np.clip(s, EPS, 1 - EPS)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log1p(-p)))


def accuracy(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows where ``score >= threshold`` matches the binary label."""
    import numpy as np

    t, s = _arrays(y_true, y_score)
    return float(np.mean((s >= threshold) == (t > 0.5))) if t.size else float("nan")


def _class_predictions(y_score: np.ndarray) -> np.ndarray:
    import numpy as np

    s = np.asarray(y_score)
    return s.argmax(axis=1) if s.ndim == 2 else s.reshape(-1)


def multiclass_accuracy(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Share of rows whose predicted class is right; ``y_score`` is [N, K] probabilities or N labels."""
    import numpy as np

    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    pred = _class_predictions(y_score).astype(np.int64)
    return float(np.mean(pred == t)) if t.size else float("nan")


def multiclass_logloss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Cross-entropy of [N, K] class probabilities (clipped to ``[EPS, 1]``) against class indices."""
    import numpy as np

    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(proba, dtype=np.float64)
    if not t.size:
        return float("nan")
    picked = np.clip(p[np.arange(t.size), t], EPS, 1.0)
    return float(-np.mean(np.log(picked)))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    import numpy as np

    t, s = _arrays(y_true, y_pred)
    return float(np.sqrt(np.mean((s - t) ** 2))) if t.size else float("nan")


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    import numpy as np

    t, s = _arrays(y_true, y_pred)
    return float(np.mean(np.abs(s - t))) if t.size else float("nan")


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination; ``nan`` for a constant target."""
    import numpy as np

    t, s = _arrays(y_true, y_pred)
    total = float(np.sum((t - t.mean()) ** 2)) if t.size else 0.0
    if total == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((t - s) ** 2)) / total


def default_metrics(task: str, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """The metrics a pipeline reports by default for its ``task``.

    * ``binary``: ``auc``, ``gini``, ``ks``, ``brier``, ``logloss``, ``accuracy`` (score ≥ 0.5),
      ``positive_rate`` (share of positives in ``y_true``), ``mean_score``.
    * ``multiclass``: ``accuracy``, plus ``logloss`` when ``y_score`` is [N, K] probabilities.
    * ``regression``: ``rmse``, ``mae``, ``r2``.
    """
    import numpy as np

    if task == "binary":
        t, s = _arrays(y_true, y_score)
        return {
            "auc": auc(t, s),
            "gini": gini(t, s),
            "ks": ks(t, s),
            "brier": brier(t, s),
            "logloss": logloss(t, s),
            "accuracy": accuracy(t, s),
            "positive_rate": float(np.mean(t > 0.5)) if t.size else float("nan"),
            "mean_score": float(np.mean(s)) if s.size else float("nan"),
        }
    if task == "multiclass":
        out = {"accuracy": multiclass_accuracy(y_true, y_score)}
        if np.asarray(y_score).ndim == 2:
            out["logloss"] = multiclass_logloss(y_true, y_score)
        return out
    if task == "regression":
        return {"rmse": rmse(y_true, y_score), "mae": mae(y_true, y_score), "r2": r2(y_true, y_score)}
    raise ValueError(f"no default metrics for task {task!r}; override Pipeline.metrics")
