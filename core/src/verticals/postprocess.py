"""From graph outputs to scoring columns, in numpy (scoring never imports torch).

:func:`default_postprocess` is what :meth:`verticals.pipeline.Pipeline.postprocess` does unless a pipeline
overrides it. The first output in the mapping is the one used (the model's ``outputs[0]``: logits for
classification, the prediction for regression).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = ["default_postprocess", "sigmoid", "softmax"]


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
