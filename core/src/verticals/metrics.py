"""Evaluation metrics: scikit-learn's implementations behind the core's metric names.

Conventions: ``y_true`` holds the encoded target (0/1 for binary, class index for multiclass, value for
regression); ``y_score`` is the pipeline's score column (probability of the positive class for
binary). Metrics that are undefined on the data (AUC with one class present, R² of a constant target,
any metric of an empty split or of non-finite scores) are ``nan`` rather than an exception, so one
degenerate split does not stop a training run. scikit-learn raises in those cases; the wrappers here
decide before calling it.

Scalar metrics return a float. Structured metrics (:func:`per_class_auc`, :func:`calibration_curve`)
return JSON-ready mappings of floats and lists, meant for ``metrics.json`` and reports.

scikit-learn is imported inside the functions, so importing this module (and the CLI) stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "accuracy",
    "auc",
    "average_precision",
    "brier",
    "calibration_curve",
    "default_metrics",
    "gini",
    "ks",
    "logloss",
    "macro_auc",
    "mae",
    "multiclass_accuracy",
    "multiclass_logloss",
    "ndcg_at_k",
    "per_class_auc",
    "pr_auc",
    "r2",
    "recall_at_k",
    "rmse",
]

#: Probabilities are clipped to [EPS, 1 - EPS] in log losses so a confident mistake costs a finite amount.
EPS = 1e-15

_NAN = float("nan")


def _arrays(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if t.shape != s.shape:
        raise ValueError(f"y_true has {t.size} values but y_score has {s.size}")
    return t, s


def _binary(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """0/1 labels (``y_true > 0.5``) and float64 scores, or ``None`` where ranking metrics are undefined
    (no rows, one class only, or a non-finite score)."""
    import numpy as np

    t, s = _arrays(y_true, y_score)
    labels = (t > 0.5).astype(np.int64)
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size or not np.isfinite(s).all():
        return None
    return labels, s


def _roc(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(fpr, tpr)`` of ``sklearn.metrics.roc_curve``, or ``None`` where it is undefined (see :func:`_binary`).

    The curve keeps only its corners (``drop_intermediate``): the area and the largest TPR − FPR gap,
    both attained at corners, are exact.
    """
    from sklearn.metrics import roc_curve

    data = _binary(y_true, y_score)
    if data is None:
        return None
    fpr, tpr, _ = roc_curve(*data)
    return fpr, tpr


def _auc_of(roc: tuple[np.ndarray, np.ndarray] | None) -> float:
    from sklearn.metrics import auc as area

    return _NAN if roc is None else float(area(*roc))


def _ks_of(roc: tuple[np.ndarray, np.ndarray] | None) -> float:
    import numpy as np

    return _NAN if roc is None else float(np.max(np.abs(roc[1] - roc[0])))


def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve (what ``sklearn.metrics.roc_auc_score`` computes: the trapezoids under
    ``roc_curve``); tied scores count one half."""
    return _auc_of(_roc(y_true, y_score))


def gini(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Gini coefficient (accuracy ratio) = 2·AUC − 1, the credit-scoring convention."""
    return 2.0 * auc(y_true, y_score) - 1.0


def ks(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic: the largest gap between the score CDFs of positives and negatives.

    Computed as ``max |TPR − FPR|`` over ``sklearn.metrics.roc_curve``'s thresholds (distinct scores),
    so tied scores never split between the two sides. Equals scipy's two-sample statistic.
    """
    return _ks_of(_roc(y_true, y_score))


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision
    (``sklearn.metrics.average_precision_score``): the step-wise sum of precision at each recall gain,
    not a trapezoid, so it is not optimistic. A random ranking scores the positive rate."""
    from sklearn.metrics import average_precision_score

    data = _binary(y_true, y_score)
    return _NAN if data is None else float(average_precision_score(*data))


#: PR-AUC is average precision (the name reports use).
pr_auc = average_precision


def brier(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean squared error of the predicted probability (``sklearn.metrics.brier_score_loss``).

    ``nan`` for an empty split, a non-finite score or a score outside [0, 1] (not a probability).
    """
    import numpy as np
    from sklearn.metrics import brier_score_loss

    t, s = _arrays(y_true, y_score)
    if not t.size or not np.isfinite(s).all() or s.min() < 0.0 or s.max() > 1.0:
        return _NAN
    return float(brier_score_loss((t > 0.5).astype(np.int64), s, pos_label=1))


def logloss(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Binary cross-entropy (``sklearn.metrics.log_loss``) of probabilities clipped to ``[EPS, 1 - EPS]``."""
    import numpy as np
    from sklearn.metrics import log_loss

    t, s = _arrays(y_true, y_score)
    if not t.size or np.isnan(s).any():
        return _NAN
    return float(log_loss((t > 0.5).astype(np.int64), np.clip(s, EPS, 1 - EPS), labels=[0, 1]))


def accuracy(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows where ``score >= threshold`` matches the binary label."""
    from sklearn.metrics import accuracy_score

    t, s = _arrays(y_true, y_score)
    return float(accuracy_score(t > 0.5, s >= threshold)) if t.size else _NAN


def _class_predictions(y_score: np.ndarray) -> np.ndarray:
    import numpy as np

    s = np.asarray(y_score)
    return s.argmax(axis=1) if s.ndim == 2 else s.reshape(-1)


def multiclass_accuracy(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Share of rows whose predicted class is right; ``y_score`` is [N, K] probabilities or N labels."""
    import numpy as np
    from sklearn.metrics import accuracy_score

    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    pred = _class_predictions(y_score).astype(np.int64)
    if pred.shape != t.shape:
        raise ValueError(f"y_true has {t.size} values but y_score has {pred.size} predictions")
    return float(accuracy_score(t, pred)) if t.size else _NAN


def multiclass_logloss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Cross-entropy (``sklearn.metrics.log_loss``) of [N, K] class probabilities, clipped to
    ``[EPS, 1]``, against class indices 0…K−1."""
    import numpy as np
    from sklearn.metrics import log_loss

    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(proba, dtype=np.float64)
    if not t.size or np.isnan(p).any():
        return _NAN
    return float(log_loss(t, np.clip(p, EPS, 1.0), labels=list(range(p.shape[1]))))


def per_class_auc(y_true: np.ndarray, proba: np.ndarray,
                  classes: Sequence[str] | None = None) -> dict[str, float]:
    """One-vs-rest AUROC of each class: class ``k``'s probability ranking rows of class ``k`` above the
    rest (``sklearn.metrics.roc_auc_score`` per column). A structured metric.

    Args:
        y_true: class indices 0…K−1.
        proba: [N, K] class probabilities (or any per-class scores: only their order matters).
        classes: names of the K classes (keys of the result); default ``"0"``…``"K-1"``.

    Returns:
        class name → AUROC, in class order; ``nan`` for a class that is absent (or alone) in ``y_true``.
        The unweighted mean of the finite values is sklearn's ``roc_auc_score(multi_class="ovr",
        average="macro")`` when every class is present.
    """
    import numpy as np

    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != t.size:
        raise ValueError(f"proba must be [N, K] with N = {t.size} rows of y_true; got shape {p.shape}")
    names = [str(k) for k in range(p.shape[1])] if classes is None else [str(c) for c in classes]
    if len(names) != p.shape[1]:
        raise ValueError(f"{len(names)} class names for {p.shape[1]} probability columns")
    return {name: auc(t == k, p[:, k]) for k, name in enumerate(names)}


def macro_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean of :func:`per_class_auc` over the classes where it is defined; ``nan`` if none is."""
    import numpy as np

    values = [v for v in per_class_auc(y_true, proba).values() if np.isfinite(v)]
    return float(np.mean(values)) if values else _NAN


def _ranking_inputs(top_k: np.ndarray | Sequence[Sequence[Any]], held_out: Sequence[Iterable[Any]],
                    k: int | None) -> tuple[list[list[Any]], list[set[Any]], int]:
    import numpy as np

    lists = [list(row) for row in (top_k.tolist() if isinstance(top_k, np.ndarray) else top_k)]
    truth = [set(np.asarray(list(items)).reshape(-1).tolist()) for items in held_out]
    if len(lists) != len(truth):
        raise ValueError(f"{len(lists)} top-k lists but {len(truth)} held-out item sets; give one per user")
    width = max((len(row) for row in lists), default=0)
    k = max(width, 1) if k is None else int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return lists, truth, k


def _ranked(row: list[Any], k: int) -> list[Any]:
    """The first ``k`` real entries of one recommendation list: negative integers pad short lists and
    a repeated item counts once, at its first position."""
    seen: set[Any] = set()
    out: list[Any] = []
    for item in row[:k]:
        if (isinstance(item, int | float) and item < 0) or item in seen:
            out.append(None)  # keeps positions: a padded slot is a miss, not a shift
            continue
        seen.add(item)
        out.append(item)
    return out


def ndcg_at_k(top_k: np.ndarray | Sequence[Sequence[Any]], held_out: Sequence[Iterable[Any]],
              k: int | None = None) -> float:
    """Mean NDCG@k with binary relevance (``sklearn.metrics.ndcg_score``), over users with held-out items.

    Args:
        top_k: one ranked recommendation list per user, best first (an [N, K] array of item ids, or
            lists); negative ids pad short lists.
        held_out: per user, the items that count as hits (the test interactions).
        k: cut-off; default the width of ``top_k``.

    Returns:
        DCG of the list (hit at 0-based position i gains ``1 / log2(i + 2)``) over the DCG of an ideal
        list (all ``min(k, |held out|)`` hits first), averaged over users with at least one held-out
        item; ``nan`` when no user has one.
    """
    import numpy as np
    from sklearn.metrics import ndcg_score

    lists, truth, k = _ranking_inputs(top_k, held_out, k)
    users = [u for u, items in enumerate(truth) if items]
    if not users:
        return _NAN
    # One row per user over k recommended slots plus that user's held-out items not recommended
    # (relevant, scored below every slot, so they only enter the ideal ranking); short rows are
    # padded with irrelevant zero-score cells, which tie only among themselves after every slot.
    rows = [_ranked(lists[u], k) for u in users]
    extra = [sorted(truth[u].difference(rows[i]), key=repr) for i, u in enumerate(users)]
    width = k + max(len(e) for e in extra)
    relevance = np.zeros((len(users), width))
    score = np.zeros((len(users), width))
    for i, u in enumerate(users):
        slots = rows[i] + [None] * (k - len(rows[i]))
        relevance[i, :k] = [item is not None and item in truth[u] for item in slots]
        score[i, :k] = np.arange(k + 1, 1, -1)  # k+1 … 2: strictly above every other cell
        relevance[i, k:k + len(extra[i])] = 1.0
    return float(ndcg_score(relevance, score, k=k))


def recall_at_k(top_k: np.ndarray | Sequence[Sequence[Any]], held_out: Sequence[Iterable[Any]],
                k: int | None = None) -> float:
    """Mean Recall@k: the share of each user's held-out items found in the first ``k`` recommendations,
    averaged over users with at least one held-out item (``nan`` when none has). Arguments as
    :func:`ndcg_at_k`. The denominator is the number of held-out items, so a user with more held-out
    items than ``k`` cannot reach 1."""
    import numpy as np

    lists, truth, k = _ranking_inputs(top_k, held_out, k)
    values = [len(truth[u].intersection(_ranked(lists[u], k))) / len(truth[u])
              for u in range(len(truth)) if truth[u]]
    return float(np.mean(values)) if values else _NAN


def calibration_curve(y_true: np.ndarray, y_score: np.ndarray, n_bins: int = 10,
                      strategy: str = "uniform") -> dict[str, Any]:
    """Binned reliability curve of binary probabilities (``sklearn.calibration.calibration_curve``).

    A structured metric: bins without rows are left out, like scikit-learn does.

    Args:
        y_true: 0/1 labels (``> 0.5`` is positive).
        y_score: probabilities in [0, 1].
        n_bins: number of bins.
        strategy: ``"uniform"`` (equal-width bins on [0, 1]) or ``"quantile"`` (equal-count bins).

    Returns:
        ``{"strategy", "n_bins", "bin_lower", "bin_upper", "count", "mean_predicted",
        "fraction_positive", "ece"}``; the lists have one entry per non-empty bin. A value on an inner
        edge belongs to the lower bin. ``ece`` (expected calibration error) is the count-weighted mean
        of ``|fraction_positive − mean_predicted|``; ``nan`` with no rows or non-finite scores.
    """
    import numpy as np
    from sklearn.calibration import calibration_curve as sk_curve

    if strategy not in ("uniform", "quantile"):
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    t, s = _arrays(y_true, y_score)
    empty = {"strategy": strategy, "n_bins": int(n_bins), "bin_lower": [], "bin_upper": [], "count": [],
             "mean_predicted": [], "fraction_positive": [], "ece": _NAN}
    if not t.size or not np.isfinite(s).all():
        return empty
    if s.min() < 0.0 or s.max() > 1.0:
        raise ValueError(f"calibration needs probabilities in [0, 1]; scores range {s.min():g}…{s.max():g}")
    labels = (t > 0.5).astype(np.int64)
    fraction, predicted = sk_curve(labels, s, n_bins=n_bins, strategy=strategy, pos_label=1)
    # The same edges and bin assignment as scikit-learn, for what it does not return (edges, counts).
    if strategy == "quantile":
        edges = np.percentile(s, np.linspace(0, 100, n_bins + 1))
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], s), minlength=n_bins)
    used = np.flatnonzero(counts)
    weights = counts[used] / counts.sum()
    return {**empty,
            "bin_lower": edges[used].tolist(), "bin_upper": edges[used + 1].tolist(),
            "count": counts[used].tolist(), "mean_predicted": predicted.tolist(),
            "fraction_positive": fraction.tolist(),
            "ece": float(np.sum(weights * np.abs(fraction - predicted)))}


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error (square root of ``sklearn.metrics.mean_squared_error``)."""
    from sklearn.metrics import mean_squared_error

    t, s = _arrays(y_true, y_pred)
    return float(mean_squared_error(t, s)) ** 0.5 if t.size else _NAN


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error (``sklearn.metrics.mean_absolute_error``)."""
    from sklearn.metrics import mean_absolute_error

    t, s = _arrays(y_true, y_pred)
    return float(mean_absolute_error(t, s)) if t.size else _NAN


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination (``sklearn.metrics.r2_score``); ``nan`` for a constant target."""
    import numpy as np
    from sklearn.metrics import r2_score

    t, s = _arrays(y_true, y_pred)
    if t.size < 2 or np.all(t == t[0]):
        return _NAN
    return float(r2_score(t, s))


def default_metrics(task: str, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """The metrics a pipeline reports by default for its ``task`` (all scalars).

    * ``binary``: ``auc``, ``gini``, ``ks``, ``pr_auc`` (average precision), ``brier``, ``logloss``,
      ``accuracy`` (score ≥ 0.5), ``positive_rate`` (share of positives in ``y_true``), ``mean_score``.
    * ``multiclass``: ``accuracy``, plus ``logloss`` and ``macro_auc`` (mean one-vs-rest AUROC) when
      ``y_score`` is [N, K] probabilities.
    * ``regression``: ``rmse``, ``mae``, ``r2``.
    """
    import numpy as np

    if task == "binary":
        t, s = _arrays(y_true, y_score)
        roc = _roc(t, s)  # one curve for auc, gini and ks
        area = _auc_of(roc)
        return {
            "auc": area,
            "gini": 2.0 * area - 1.0,
            "ks": _ks_of(roc),
            "pr_auc": average_precision(t, s),
            "brier": brier(t, s),
            "logloss": logloss(t, s),
            "accuracy": accuracy(t, s),
            "positive_rate": float(np.mean(t > 0.5)) if t.size else _NAN,
            "mean_score": float(np.mean(s)) if s.size else _NAN,
        }
    if task == "multiclass":
        out = {"accuracy": multiclass_accuracy(y_true, y_score)}
        if np.asarray(y_score).ndim == 2:
            out["logloss"] = multiclass_logloss(y_true, y_score)
            out["macro_auc"] = macro_auc(y_true, y_score)
        return out
    if task == "regression":
        return {"rmse": rmse(y_true, y_score), "mae": mae(y_true, y_score), "r2": r2(y_true, y_score)}
    raise ValueError(f"no default metrics for task {task!r}; override Pipeline.metrics")
