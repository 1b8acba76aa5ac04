"""Baseline models trained in the same run, on the same split and inputs as the network.

A credit team asks first whether the network beats the models they already trust. Both baselines
take the batches the network was trained on (``x_num`` raw with NaN, ``x_cat`` vocabulary indices from
the same fitted preprocessor), so the comparison differs only in the model:

* ``logistic_regression``: the network's own imputation and standardisation (training medians,
  means and standard deviations from the preprocessor's state), one-hot categories, L2-regularised
  logistic regression (scikit-learn defaults, ``C = 1``).
* ``hist_gradient_boosting``: scikit-learn's ``HistGradientBoostingClassifier`` on the raw values
  (it handles missing values itself) with the categorical columns declared categorical, learning rate
  0.05, up to 500 trees, early stopping on the validation split, like the network.

Their probabilities are not recalibrated (both optimise the log loss on unweighted data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from verticals.spec import Batch

__all__ = ["BASELINES", "BaselineResult", "fit_baselines"]

BASELINES = ("logistic_regression", "hist_gradient_boosting")


@dataclass
class BaselineResult:
    """Per baseline: predicted PD on each split given, and the seconds its fit took."""

    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _numeric(batch: Batch) -> np.ndarray:
    import numpy as np

    x = batch.inputs.get("x_num")
    return np.zeros((len(batch), 0)) if x is None else np.asarray(x, dtype=np.float64)


def _categorical(batch: Batch) -> np.ndarray:
    import numpy as np

    x = batch.inputs.get("x_cat")
    return np.zeros((len(batch), 0), dtype=np.int64) if x is None else np.asarray(x, dtype=np.int64)


def _linear_design(batch: Batch, state: Mapping[str, Any], cardinalities: list[int]) -> np.ndarray:
    """Imputed, standardised numerics (the graph module's arithmetic) and one-hot categories."""
    import numpy as np

    num = _numeric(batch)
    stats = state.get("numeric", [])
    if num.shape[1]:
        median = np.array([s["median"] for s in stats])
        mean = np.array([s["mean"] for s in stats])
        std = np.array([s["std"] for s in stats])
        num = (np.where(np.isnan(num), median, num) - mean) / std
    cat = _categorical(batch)
    blocks = [num]
    for j, card in enumerate(cardinalities):
        onehot = np.zeros((len(batch), card))
        onehot[np.arange(len(batch)), np.clip(cat[:, j], 0, card - 1)] = 1.0
        blocks.append(onehot[:, 1:])  # index 0 (unknown) is the reference level
    return np.concatenate(blocks, axis=1)


def _tree_design(batch: Batch) -> np.ndarray:
    import numpy as np

    cat = _categorical(batch).astype(np.float64)
    cat[cat == 0] = np.nan  # unknown/missing category: the trees' missing-value branch
    return np.concatenate([_numeric(batch), cat], axis=1)


def concat_batches(first: Batch, second: Batch, *, rows: int | None = None) -> Batch:
    """``first`` then ``second`` as one batch (ids, inputs, target); ``rows=0`` gives an empty one."""
    import numpy as np
    import polars as pl
    from verticals.spec import Batch as _Batch

    if rows == 0:
        return _Batch(ids=first.ids.clear(), inputs={k: v[:0] for k, v in first.inputs.items()},
                      target=None if first.target is None else first.target[:0])
    target = None if first.target is None or second.target is None else np.concatenate([first.target, second.target])
    return _Batch(ids=pl.concat([first.ids, second.ids], how="vertical_relaxed"),
                  inputs={k: np.concatenate([v, second.inputs[k]]) for k, v in first.inputs.items()}, target=target)


def fit_baselines(batches: Mapping[str, Batch], preprocessor_state: Mapping[str, Any],
                  cardinalities: list[int], *, seed: int = 0,
                  predict: tuple[str, ...] = ("valid", "test")) -> BaselineResult:
    """Fit both baselines on ``batches["train"]`` and predict PD on the splits in ``predict``.

    Runs single-threaded: in a process where torch has loaded its own OpenMP runtime, scikit-learn's
    (a second copy) makes the gradient boosting 10-20× slower with two threads than with one
    (measured on the 2-core machine: 30 s against 1.6 s for ``credit_data``).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _fit_baselines(batches, preprocessor_state, cardinalities, seed=seed, predict=predict)


def _fit_baselines(batches: Mapping[str, Batch], preprocessor_state: Mapping[str, Any],
                   cardinalities: list[int], *, seed: int, predict: tuple[str, ...]) -> BaselineResult:
    import time

    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    train, valid = batches["train"], batches.get("valid")
    y = np.asarray(train.target, dtype=np.float64) > 0.5
    result = BaselineResult()

    started = time.perf_counter()
    linear = LogisticRegression(C=1.0, max_iter=2000)
    linear.fit(_linear_design(train, preprocessor_state, cardinalities), y)
    result.seconds["logistic_regression"] = time.perf_counter() - started
    result.scores["logistic_regression"] = {
        split: linear.predict_proba(_linear_design(batches[split], preprocessor_state, cardinalities))[:, 1]
        for split in predict if split in batches and len(batches[split])}

    started = time.perf_counter()
    n_num = _numeric(train).shape[1]
    categorical = [n_num + j for j, card in enumerate(cardinalities) if card <= 255]
    mask = np.zeros(n_num + len(cardinalities), dtype=bool)
    mask[categorical] = True
    has_valid = valid is not None and len(valid) > 0 and valid.target is not None \
        and len(np.unique(valid.target > 0.5)) == 2

    def boosting(validation_fraction: float | None) -> Any:
        return HistGradientBoostingClassifier(
            learning_rate=0.05, max_iter=500, categorical_features=mask if mask.any() else None,
            early_stopping=True, n_iter_no_change=20, random_state=seed, validation_fraction=validation_fraction)

    trees = boosting(None if has_valid else 0.1)
    try:
        if not has_valid:
            raise TypeError("no validation split")
        trees.fit(_tree_design(train), y, X_val=_tree_design(valid), y_val=np.asarray(valid.target) > 0.5)
    except TypeError:  # scikit-learn < 1.7 has no X_val: early-stop on 10 % of the training split
        trees = boosting(0.1)
        trees.fit(_tree_design(train), y)
    result.seconds["hist_gradient_boosting"] = time.perf_counter() - started
    result.scores["hist_gradient_boosting"] = {
        split: trees.predict_proba(_tree_design(batches[split]))[:, 1]
        for split in predict if split in batches and len(batches[split])}
    return result
