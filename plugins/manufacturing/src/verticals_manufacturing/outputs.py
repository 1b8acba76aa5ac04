"""From the graph's outputs to the scoring columns shared by both pipelines (numpy and polars only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = ["DEFAULT_THRESHOLD", "failure_outputs"]

#: The alert threshold while no cost-based one is stored yet (validation during training).
DEFAULT_THRESHOLD = 0.5


def _sigmoid(z: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=np.float64)))


def failure_outputs(outputs: Mapping[str, np.ndarray], extras: Mapping[str, Any],
                    mode_names: Sequence[str]) -> pl.DataFrame:
    """``probability`` (sigmoid of the failure logit), ``mode`` and ``mode_probability`` (the mode head's
    largest sigmoid: the chance of that mode given a failure) and ``alert`` (probability at or above the
    stored threshold)."""
    import numpy as np
    import polars as pl

    probability = _sigmoid(outputs["logits"]).reshape(-1)
    mode_p = _sigmoid(outputs["mode_logits"]).reshape(len(probability), -1)
    best = mode_p.argmax(axis=1) if mode_p.shape[1] else np.zeros(len(probability), dtype=np.int64)
    names = np.asarray(list(extras.get("modes", mode_names)), dtype=object)
    threshold = float(extras.get("threshold", DEFAULT_THRESHOLD))
    return pl.DataFrame([
        pl.Series("probability", probability, dtype=pl.Float64),
        pl.Series("mode", names[best].tolist() if len(names) else [""] * len(probability), dtype=pl.String),
        pl.Series("mode_probability", mode_p[np.arange(len(probability)), best] if mode_p.shape[1]
                  else np.zeros(len(probability)), dtype=pl.Float64),
        pl.Series("alert", probability >= threshold, dtype=pl.Boolean),
    ])
