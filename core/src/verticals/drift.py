"""Reference distributions at training time and the Population Stability Index (PSI) at scoring time.

:func:`profile` summarises the training split as JSON stored in the model manifest (``reference``):

* numeric features (and the model score): bucket edges at the deciles of the training values
  (duplicates removed, so a feature with few distinct values gets fewer buckets; the first and last
  buckets are open-ended), the share of rows in each bucket, and the share of missing values as a
  bucket of its own. Buckets are ``(-inf, e0], (e0, e1], …, (e_last, inf)``.
* categorical features: the shares of the 20 most frequent values, of all other values together
  (``other``, which also receives values never seen in training) and of missing values.

:func:`compare` puts new rows into the same buckets and computes, per feature,
``PSI = Σ (actual − expected) · ln(actual / expected)`` over the buckets. A bucket with no rows on
either side would make the logarithm infinite, so shares below ``PSI_EPSILON`` (0.0001) are raised to
it before the sum (no renormalisation; the effect on PSI is below 0.001 per empty bucket pair).

Thresholds, the usual credit-risk convention: PSI < ``PSI_MODERATE`` (0.1) is *stable*, up to
``PSI_SIGNIFICANT`` (0.25) *moderate* (investigate), above that *significant* (the model sees a
different population; retrain or review).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from verticals.spec import Schema

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = ["PSI_EPSILON", "PSI_MODERATE", "PSI_SIGNIFICANT", "TOP_CATEGORIES", "compare", "profile", "psi",
           "status"]

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
PSI_EPSILON = 1e-4
TOP_CATEGORIES = 20
_FORMAT = 1
_NUMERIC = ("float", "int", "bool")
_CATEGORICAL = ("category", "string")


def status(value: float) -> str:
    """``stable`` / ``moderate`` / ``significant`` for a PSI value (``unknown`` for NaN)."""
    if value != value:  # NaN
        return "unknown"
    if value < PSI_MODERATE:
        return "stable"
    if value < PSI_SIGNIFICANT:
        return "moderate"
    return "significant"


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI between two lists of bucket shares, with shares below ``PSI_EPSILON`` raised to it."""
    import numpy as np

    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def _floats(frame: pl.DataFrame, name: str) -> np.ndarray:
    import numpy as np
    import polars as pl

    if name not in frame.columns:
        return np.full(frame.height, np.nan)
    return frame.get_column(name).cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _numeric_shares(values: np.ndarray, edges: Sequence[float]) -> tuple[list[float], float]:
    import numpy as np

    values = np.asarray(values, dtype=np.float64).reshape(-1)
    n = values.size
    if n == 0:
        return [0.0] * (len(edges) + 1), 0.0
    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=np.float64), values[~missing], side="left"),
                         minlength=len(edges) + 1)
    return (counts / n).tolist(), float(missing.sum() / n)


def _numeric_profile(values: np.ndarray, bins: int) -> dict[str, Any]:
    import numpy as np

    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = values[~np.isnan(values)]
    if finite.size:
        # Observed values as edges (no interpolation), so a discrete feature gets one bucket per value.
        edges = np.unique(np.quantile(finite, np.arange(1, bins) / bins, method="inverted_cdf")).tolist()
    else:
        edges = []
    shares, missing = _numeric_shares(values, edges)
    return {"kind": "numeric", "edges": edges, "proportions": shares, "missing": missing}


def _strings(frame: pl.DataFrame, name: str) -> pl.Series:
    import polars as pl

    if name not in frame.columns:
        return pl.Series(name, [None] * frame.height, dtype=pl.String)
    values = frame.get_column(name).cast(pl.String)
    return values.set(values.str.strip_chars() == "", None)


def _categorical_shares(values: pl.Series, categories: Sequence[str]) -> tuple[list[float], float, float]:
    n = values.len()
    if n == 0:
        return [0.0] * len(categories), 0.0, 0.0
    counts = dict(values.drop_nulls().value_counts(name="n").iter_rows())
    known = [counts.get(c, 0) for c in categories]
    missing = values.null_count()
    return [k / n for k in known], (n - missing - sum(known)) / n, missing / n


def _categorical_profile(values: pl.Series) -> dict[str, Any]:
    name = values.name
    top = (values.drop_nulls().value_counts(name="n").sort(["n", name], descending=[True, False])
           .head(TOP_CATEGORIES).get_column(name).to_list())
    shares, other, missing = _categorical_shares(values, top)
    return {"kind": "categorical", "categories": top, "proportions": shares, "other": other, "missing": missing}


def profile(frame: pl.DataFrame, schema: Schema, scores: np.ndarray | None = None, bins: int = 10) -> dict[str, Any]:
    """The reference profile of ``frame`` (the training split's valid rows) as JSON.

    Args:
        frame: validated rows.
        schema: its ``feature`` columns are profiled (numeric and categorical; others are skipped).
        scores: the model's score on the same rows, profiled as ``score``.
        bins: quantile buckets per numeric feature (before duplicate edges are removed).
    """
    features: dict[str, Any] = {}
    for column in schema.features:
        if column.dtype in _NUMERIC:
            features[column.name] = _numeric_profile(_floats(frame, column.name), bins)
        elif column.dtype in _CATEGORICAL:
            features[column.name] = _categorical_profile(_strings(frame, column.name))
    return {
        "format": _FORMAT,
        "rows": frame.height,
        "bins": bins,
        "features": features,
        "score": _numeric_profile(scores, bins) if scores is not None else None,
    }


def _numeric_psi(ref: Mapping[str, Any], values: np.ndarray) -> float:
    if len(values) == 0:
        return float("nan")
    shares, missing = _numeric_shares(values, ref["edges"])
    return psi([*ref["proportions"], ref["missing"]], [*shares, missing])


class DriftCounter:
    """PSI against a reference profile, accumulated batch by batch: memory stays constant however many
    rows are monitored (the counts per bucket are exact, as if every row were compared at once)."""

    def __init__(self, reference: Mapping[str, Any]) -> None:
        import numpy as np

        self.reference = reference
        self.counts: dict[str, np.ndarray] = {}
        self.rows = 0
        self.scored = 0
        for name, ref in (reference.get("features") or {}).items():
            size = len(ref["edges"]) + 2 if ref["kind"] == "numeric" else len(ref["categories"]) + 2
            self.counts[name] = np.zeros(size, dtype=np.int64)
        score = reference.get("score")
        self.score = np.zeros(len(score["edges"]) + 2, dtype=np.int64) if score is not None else None

    @staticmethod
    def _numeric_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
        import numpy as np

        values = np.asarray(values, dtype=np.float64).reshape(-1)
        missing = np.isnan(values)
        counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=np.float64), values[~missing], side="left"),
                             minlength=len(edges) + 1)
        return np.append(counts, missing.sum())

    def add(self, frame: pl.DataFrame | None = None, scores: np.ndarray | None = None) -> None:
        """Count ``frame``'s rows (validated input) and ``scores`` (the score column of the output)."""
        import numpy as np

        if frame is not None and frame.height:
            self.rows += frame.height
            for name, ref in (self.reference.get("features") or {}).items():
                if ref["kind"] == "numeric":
                    self.counts[name] += self._numeric_counts(_floats(frame, name), ref["edges"])
                else:
                    values = _strings(frame, name)
                    found = dict(values.drop_nulls().value_counts(name="n").iter_rows())
                    known = [found.get(c, 0) for c in ref["categories"]]
                    missing = values.null_count()
                    self.counts[name] += np.array([*known, values.len() - missing - sum(known), missing])
        if scores is not None and self.score is not None and len(scores):
            self.scored += len(scores)
            self.score += self._numeric_counts(scores, self.reference["score"]["edges"])

    def result(self) -> list[dict[str, Any]]:
        """One row per feature then ``score``, as :func:`compare` returns them."""
        rows: list[dict[str, Any]] = []
        for name, ref in (self.reference.get("features") or {}).items():
            counts = self.counts[name]
            if not self.rows:
                value = float("nan")
            elif ref["kind"] == "numeric":
                value = psi([*ref["proportions"], ref["missing"]], (counts / self.rows).tolist())
            else:
                value = psi([*ref["proportions"], ref["other"], ref["missing"]], (counts / self.rows).tolist())
            rows.append({"feature": name, "kind": ref["kind"], "psi": value, "status": status(value)})
        if self.score is not None and self.scored:
            ref = self.reference["score"]
            value = psi([*ref["proportions"], ref["missing"]], (self.score / self.scored).tolist())
            rows.append({"feature": "score", "kind": "score", "psi": value, "status": status(value)})
        return rows


def compare(reference: Mapping[str, Any], frame: pl.DataFrame,
            scores: np.ndarray | None = None) -> list[dict[str, Any]]:
    """PSI of each profiled feature (and of the score when both sides have one) on new rows.

    Returns:
        One row per feature in the reference's order, then ``score``:
        ``{"feature", "kind", "psi", "status"}`` with ``kind`` numeric/categorical/score; ``psi`` is
        NaN (status ``unknown``) when ``frame`` has no rows.
    """
    rows: list[dict[str, Any]] = []
    for name, ref in reference.get("features", {}).items():
        if ref["kind"] == "numeric":
            value = _numeric_psi(ref, _floats(frame, name))
        else:
            values = _strings(frame, name)
            if values.len() == 0:
                value = float("nan")
            else:
                shares, other, missing = _categorical_shares(values, ref["categories"])
                value = psi([*ref["proportions"], ref["other"], ref["missing"]], [*shares, other, missing])
        rows.append({"feature": name, "kind": ref["kind"], "psi": value, "status": status(value)})
    if reference.get("score") is not None and scores is not None:
        import numpy as np

        value = _numeric_psi(reference["score"], np.asarray(scores, dtype=np.float64).reshape(-1))
        rows.append({"feature": "score", "kind": "score", "psi": value, "status": status(value)})
    return rows
