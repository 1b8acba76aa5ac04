"""From graph outputs to scoring columns, in numpy (scoring never imports torch).

:func:`default_postprocess` is what :meth:`verticals.pipeline.Pipeline.postprocess` does unless a pipeline
overrides it. The first output in the mapping is the one used (the model's ``outputs[0]``: logits for
classification, the prediction for regression).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = ["default_postprocess", "sigmoid", "softmax", "top_k_lists"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: ``exp(-log(1 + exp(-x)))`` (keeps the input's float dtype)."""
    import numpy as np

    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return np.exp(-np.logaddexp(0, -x))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, shifted by the row maximum so large logits do not overflow."""
    import numpy as np

    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    z = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def _first_column(x: np.ndarray) -> np.ndarray:
    """One value per row from an output of shape [N] or [N, 1, ...]."""
    return x if x.ndim == 1 else x[(slice(None),) + (0,) * (x.ndim - 1)]


def default_postprocess(task: str, outputs: Mapping[str, np.ndarray]) -> pl.DataFrame:
    """Output columns for one batch by ``task``.

    * ``binary``: ``score`` = sigmoid of the first output (a logit per row, shape [N] or [N, 1]).
    * ``multiclass``: ``label`` = argmax class index, ``score`` = its softmax probability.
    * ``regression``: ``score`` = the first output.

    Raises:
        ValueError: ``outputs`` is empty, or the task has no default.
    """
    import numpy as np
    import polars as pl

    if not outputs:
        raise ValueError("default_postprocess got no model outputs")
    first = np.asarray(next(iter(outputs.values())))
    if task == "binary":
        return pl.DataFrame({"score": sigmoid(_first_column(first))})
    if task == "multiclass":
        proba = softmax(first if first.ndim == 2 else first.reshape(first.shape[0], -1), axis=1)
        label = proba.argmax(axis=1)
        return pl.DataFrame({"label": label.astype(np.int64),
                             "score": proba[np.arange(proba.shape[0]), label]})
    if task == "regression":
        return pl.DataFrame({"score": _first_column(first)})
    raise ValueError(f"no default postprocessing for task {task!r}; override Pipeline.postprocess")


def top_k_lists(pipeline: str, index: np.ndarray, scores: np.ndarray, catalogue: pl.DataFrame | None,
                expected: bool, rows: int, keep: np.ndarray | None = None) -> pl.DataFrame:
    """A ranking graph's top-k outputs as list columns: ``items`` (ids from the ``catalogue`` artifact's
    ``item`` column), ``scores`` and ``_index`` (the model indices, for metrics).

    ``rows`` is the batch's length (used when the graph returned no list). ``keep`` (rows × k booleans, a prefix per row) drops slots that hold no recommendation (a masked
    item when the catalogue runs out). Without a catalogue ``items`` is null; that is an error when
    ``expected`` (a registered version whose catalogue artifact is missing), fine while training.

    Raises:
        ModelIntegrityError: the catalogue is missing when expected, or an index falls outside it.
    """
    import numpy as np
    import polars as pl

    from verticals.errors import ModelIntegrityError

    index = np.asarray(index, dtype=np.int64)
    rows, k = index.shape if index.ndim == 2 else (rows, 0)
    if catalogue is None:
        if expected:
            raise ModelIntegrityError(
                f"pipeline {pipeline}: the model version has no 'catalogue' artifact to map item indices to ids",
                hint="retrain the model; its version folder is incomplete")
        items = pl.Series("items", [None] * rows, dtype=pl.List(pl.String))
    else:
        names = catalogue.get_column("item")
        if index.size and (index.min() < 0 or index.max() >= names.len()):
            raise ModelIntegrityError(
                f"pipeline {pipeline}: the model recommends item index {int(index.max())} but the catalogue has "
                f"{names.len()} items", hint="retrain the model; its files do not belong together")
        items = _lists(names.gather(pl.Series(index.reshape(-1))), rows, k, pl.String, keep).alias("items")
    flat_scores = pl.Series(np.asarray(scores, dtype=np.float64).reshape(-1))
    return pl.DataFrame([items, _lists(flat_scores, rows, k, pl.Float64, keep).alias("scores"),
                         _lists(pl.Series(index.reshape(-1)), rows, k, pl.Int64, None).alias("_index")])


def _lists(values: pl.Series, rows: int, k: int, dtype: Any, keep: np.ndarray | None) -> pl.Series:
    """A flat series of ``rows * k`` values as ``rows`` lists, cut to the ``keep`` prefix of each row."""
    import numpy as np
    import polars as pl

    if rows == 0 or k == 0:
        return pl.Series(values.name, [[] for _ in range(rows)], dtype=pl.List(dtype))
    full = values.cast(dtype).reshape((rows, k)).cast(pl.List(dtype))
    if keep is None or bool(np.all(keep)):
        return full
    lengths = pl.Series("n", np.asarray(keep).sum(axis=1), dtype=pl.Int64)
    return pl.DataFrame([full.alias("v"), lengths]).select(pl.col("v").list.head(pl.col("n"))).to_series() \
        .alias(values.name)
