"""The credit pipeline's preprocessor: the core's tabular one, plus quantile knots for the model.

The model's numeric features are piecewise-linear functions whose knots sit at quantiles of the
training split (like the bins of a classic scorecard, but continuous). The knots are fitted here, on
the training split only, and handed to the model factory through :meth:`info`; they are expressed in
the space the model sees (after the in-graph median imputation and standardisation). Everything
else (vocabularies, imputation, scaling, target encoding) is :class:`TabularPreprocessor`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from verticals.data.tabular import TabularPreprocessor

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

__all__ = ["DEFAULT_BINS", "CreditPreprocessor"]

#: Quantile bins per numeric feature (knots = bins + 1 before duplicates are merged).
DEFAULT_BINS = 16


class CreditPreprocessor(TabularPreprocessor):
    """:class:`TabularPreprocessor` that also fits per-feature quantile knots (see module docstring).

    Args:
        bins: quantile bins per numeric feature; repeated quantiles (a feature that is 0 for half the
            applicants) are merged, so a feature may get fewer.
        **kwargs: passed to :class:`TabularPreprocessor`.
    """

    def __init__(self, *args: Any, bins: int = DEFAULT_BINS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bins = int(bins)
        self.knots: list[list[float]] = []
        self.rows = 0

    def fit(self, frame: pl.DataFrame) -> None:
        import numpy as np
        import polars as pl

        super().fit(frame)
        self.rows = int(frame.height)
        probs = np.linspace(0.0, 1.0, self.bins + 1)
        self.knots = []
        for name, median, mean, std in zip(self.numeric, self.medians, self.means, self.stds, strict=True):
            values = (frame.get_column(name).cast(pl.Float64).fill_nan(None).drop_nulls().to_numpy()
                      if name in frame.columns else np.empty(0))
            raw = np.quantile(values, probs) if values.size else np.array([median])
            scaled = np.unique(np.round((raw - mean) / std, 6))
            self.knots.append([float(k) for k in scaled])

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["knots"] = [list(k) for k in self.knots]
        info["rows"] = self.rows  # how much data the model learns from: its shape's complexity follows
        return info

    def state(self) -> dict[str, Any]:
        state = super().state()
        state["knots"] = [list(k) for k in self.knots]
        state["bins"] = self.bins
        state["rows"] = self.rows
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.knots = [[float(v) for v in k] for k in state.get("knots", [])]
        self.bins = int(state.get("bins", self.bins))
        self.rows = int(state.get("rows", 0))
