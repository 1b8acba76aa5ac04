"""Baselines trained in the same run, on the same split and the same features as the network.

A maintenance team asks first whether the network beats what they could fit in an afternoon. Both
baselines see exactly the features the network's graph computes (the physics features of
:mod:`verticals_manufacturing.physics`; for the fleet, per window the last reading's features and each
channel's window mean, minimum, maximum and slope), after the same median imputation:

* ``logistic_regression``: standardised features, L2-regularised (``C = 1``), scikit-learn defaults;
* ``hist_gradient_boosting``: ``HistGradientBoostingClassifier``, learning rate 0.05, up to 500 trees,
  early stopping on the validation split like the network (product type as a categorical feature).

Each gets its own cost-optimal alert threshold on validation, and its test metrics (the same
:func:`~verticals_manufacturing.evaluation.failure_metrics`) go to ``metrics.json`` under
``baselines``. They run single-threaded: next to torch's OpenMP runtime, scikit-learn's second copy
makes gradient boosting many times slower with two threads than with one on a 2-core machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from verticals.spec import Batch

__all__ = ["BASELINES", "CROSSFIT_BOOSTING", "baseline_extras", "crossfit_boosting", "fit_baselines", "process_design"]

#: The baseline fitted like a cross-fitted network (same pooled examples, same folds of whole machines).
CROSSFIT_BOOSTING = "hist_gradient_boosting_crossfit"

BASELINES = ("logistic_regression", "hist_gradient_boosting")


def process_design(batch: Batch, medians: list[float]) -> tuple[np.ndarray, list[int]]:
    """The process pipeline's features for the baselines: physics features and the type index."""
    import numpy as np

    from verticals_manufacturing.physics import physics_features

    x = np.asarray(batch.inputs["x"], dtype=np.float64)
    x = np.where(np.isnan(x), np.asarray(medians), x)
    types = np.asarray(batch.inputs["product_type"], dtype=np.int64)
    features = physics_features(x, types)
    return np.column_stack([features, types.astype(np.float64)]), [features.shape[1]]


def fit_baselines(designs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], categorical: list[int],
                  *, seed: int) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Fit both baselines on ``designs["train"]``; predict every split. Returns scores and seconds."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _fit(designs, targets, categorical, seed=seed)


def _fit(designs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], categorical: list[int], *,
         seed: int) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x_train = designs["train"]
    y_train = np.asarray(targets["train"]).reshape(-1) > 0.5
    numeric = [j for j in range(x_train.shape[1]) if j not in categorical]
    scores: dict[str, dict[str, np.ndarray]] = {name: {} for name in BASELINES}
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    scaler = StandardScaler().fit(x_train[:, numeric])
    onehot = OneHotEncoder(handle_unknown="ignore").fit(x_train[:, categorical]) if categorical else None

    def linear_design(x: np.ndarray) -> np.ndarray:
        parts = [scaler.transform(x[:, numeric])]
        if onehot is not None:
            parts.append(onehot.transform(x[:, categorical]).toarray())
        return np.concatenate(parts, axis=1)

    linear = LogisticRegression(C=1.0, max_iter=2000).fit(linear_design(x_train), y_train)
    seconds["logistic_regression"] = time.perf_counter() - started
    for split, x in designs.items():
        if len(x):
            scores["logistic_regression"][split] = linear.predict_proba(linear_design(x))[:, 1]

    started = time.perf_counter()
    mask = np.zeros(x_train.shape[1], dtype=bool)
    mask[categorical] = True
    x_valid, y_valid = designs.get("valid"), targets.get("valid")
    has_valid = x_valid is not None and len(x_valid) > 0 and len(np.unique(np.asarray(y_valid) > 0.5)) == 2

    def boosting(fraction: float | None) -> Any:
        return HistGradientBoostingClassifier(learning_rate=0.05, max_iter=500, early_stopping=True,
                                              n_iter_no_change=20, random_state=seed, validation_fraction=fraction,
                                              categorical_features=mask if mask.any() else None)

    trees = boosting(None if has_valid else 0.1)
    try:
        if not has_valid:
            raise TypeError("no validation split with both classes")
        trees.fit(x_train, y_train, X_val=x_valid, y_val=np.asarray(y_valid).reshape(-1) > 0.5)
    except TypeError:  # scikit-learn < 1.7 has no X_val: early-stop on 10 % of the training split
        trees = boosting(0.1)
        trees.fit(x_train, y_train)
    seconds["hist_gradient_boosting"] = time.perf_counter() - started
    for split, x in designs.items():
        if len(x):
            scores["hist_gradient_boosting"][split] = trees.predict_proba(x)[:, 1]
    return scores, seconds


def crossfit_boosting(x_pool: np.ndarray, y_pool: np.ndarray, fold: np.ndarray, x_test: np.ndarray, *,
                      seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Gradient boosting cross-fitted exactly as the network: one model per fold, trained on the other
    folds' pooled examples and early-stopped on the held-out fold.

    Args:
        fold: each pooled example's fold, one column per repeat (``CrossFit.fold``).

    Returns:
        ``(out_of_fold, test, seconds)``: each pooled example's probability from the models that never saw
        it (mean over repeats), the test probability averaged over every fold model, and the fit time.
    """
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    y = np.asarray(y_pool).reshape(-1) > 0.5
    fold = np.asarray(fold).reshape(len(y), -1)
    repeats, folds = fold.shape[1], int(fold.max()) + 1
    oof, test = np.zeros(len(y)), np.zeros(len(x_test))
    with threadpool_limits(limits=1):
        for r in range(repeats):
            for k in range(folds):
                held = fold[:, r] == k
                trees = HistGradientBoostingClassifier(learning_rate=0.05, max_iter=500, early_stopping=True,
                                                       n_iter_no_change=20, random_state=seed + k,
                                                       validation_fraction=None)
                trees.fit(x_pool[~held], y[~held], X_val=x_pool[held], y_val=y[held])
                oof[held] += trees.predict_proba(x_pool[held])[:, 1] / repeats
                if len(x_test):
                    test += trees.predict_proba(x_test)[:, 1] / (repeats * folds)
    return oof, test, time.perf_counter() - started


def baseline_extras(pipe: Any, context: Any, *, physics: bool = True,
                    design: Callable[[str], tuple[np.ndarray, np.ndarray, Any, list[int]]] | None = None
                    ) -> dict[str, Any]:
    """Fit the baselines for ``pipe`` and return ``baseline_metrics`` (test), ``baseline_seconds`` and
    ``baseline_thresholds``; their scores stay on ``context.manufacturing_baselines`` for the report.

    ``design(split) -> (features, target, aux, categorical)``; default: the process pipeline's design
    from ``context.batches`` (materialized splits).
    """
    import numpy as np

    from verticals_manufacturing.evaluation import choose_threshold, failure_metrics

    designs: dict[str, np.ndarray] = {}
    targets: dict[str, np.ndarray] = {}
    auxes: dict[str, Any] = {}
    categorical: list[int] = []
    for split in ("train", "valid", "test"):
        if design is not None:
            designs[split], targets[split], auxes[split], categorical = design(split)
        else:
            batch = context.batches[split]
            designs[split], categorical = process_design(batch, context.preprocessor.state()["medians"])
            targets[split], auxes[split] = batch.labels, batch.aux
    if len(designs["train"]) == 0 or len(np.unique(np.asarray(targets["train"]) > 0.5)) < 2:
        return {"baseline_metrics": {}, "baseline_note": "training split has one class: no baselines"}
    seed = int(getattr(getattr(context, "splits", None), "seed", None) or pipe.training.seed)
    scores, seconds = fit_baselines(designs, targets, categorical, seed=seed)
    metrics: dict[str, Any] = {}
    thresholds: dict[str, float] = {}
    for name, by_split in scores.items():
        if "valid" in by_split and len(targets["valid"]):
            thresholds[name] = choose_threshold(targets["valid"], by_split["valid"], pipe.costs["miss"],
                                                pipe.costs["false_alarm"])["threshold"]
        else:
            thresholds[name] = 0.5
        if "test" in by_split:
            metrics[name] = failure_metrics(targets["test"], by_split["test"], by_split["test"] >= thresholds[name],
                                            modes=auxes["test"], mode_names=pipe.mode_names, costs=pipe.costs)
    context.manufacturing_baselines = {"scores": scores, "targets": targets, "thresholds": thresholds}
    return {"baseline_metrics": metrics, "baseline_seconds": {k: round(v, 3) for k, v in seconds.items()},
            "baseline_thresholds": thresholds}
