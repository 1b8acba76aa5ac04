"""Reference distributions at training time and the Population Stability Index (PSI) at scoring time.

:func:`profile` summarises the training split as JSON stored in the model manifest (``reference``):

* numeric features (and the model score): bucket edges at the deciles of the training values
  (duplicates removed, so a feature with few distinct values gets fewer buckets; the first and last
  buckets are open-ended), the share of rows in each bucket, and the share of missing values as a
  bucket of its own. Buckets are ``(-inf, e0], (e0, e1], …, (e_last, inf)``.
* categorical features: the shares of the 20 most frequent values, of all other values together
  (``other``, which also receives values never seen in training) and of missing values.
* list-valued outputs (top-k recommendations, ``outputs=``): scalar PSI does not apply to a list, so
  what is profiled is what a recommender's users notice: the shares of recommendation *slots* taken by
  the 20 most recommended values (and ``other``): the popularity of recommended items, compared by PSI
  like a category; ``distinct`` values recommended, ``coverage`` (distinct / ``catalogue`` size, when
  given), ``top_share`` (slots held by the 10 most recommended values: concentration) and the mean
  list length. Scalar outputs other than the score are not profiled.

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

__all__ = ["PSI_EPSILON", "PSI_MODERATE", "PSI_SIGNIFICANT", "TOP_CATEGORIES", "compare", "list_profile",
           "profile", "psi", "status"]

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
PSI_EPSILON = 1e-4
TOP_CATEGORIES = 20
TOP_SHARE_VALUES = 10
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


def profile(frame: pl.DataFrame, schema: Schema, scores: np.ndarray | None = None, bins: int = 10, *,
            outputs: pl.DataFrame | None = None, catalogue: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The reference profile of ``frame`` (the training split's valid rows) as JSON.

    Args:
        frame: validated rows.
        schema: its ``feature`` columns are profiled (numeric and categorical; others are skipped).
        scores: the model's score on the same rows, profiled as ``score`` (scalar scores only).
        bins: quantile buckets per numeric feature (before duplicate edges are removed).
        outputs: the pipeline's output columns on the training split; each list-valued column is
            profiled under ``outputs`` (:func:`list_profile`), other columns are ignored.
        catalogue: per list column, how many distinct values it could hold (catalogue size), for
            ``coverage``.
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
        "outputs": {name: list_profile(outputs.get_column(name), (catalogue or {}).get(name))
                    for name in _list_columns(outputs)},
    }


def _list_columns(frame: pl.DataFrame | None) -> list[str]:
    import polars as pl

    if frame is None:
        return []
    return [name for name, dtype in frame.schema.items()
            if isinstance(dtype, (pl.List, pl.Array)) and not name.startswith("_")]


def _slots(values: pl.Series) -> pl.Series:
    """Every element of every list of ``values``, as strings (nulls dropped)."""
    import polars as pl

    if isinstance(values.dtype, pl.Array):
        values = values.cast(pl.List(values.dtype.inner))
    return values.explode().drop_nulls().cast(pl.String).rename("value")


def _list_counts(values: pl.Series) -> dict[str, int]:
    """How many recommendation slots each value takes in ``values`` (a list column)."""
    return {str(v): int(n) for v, n in _slots(values).value_counts(name="n").iter_rows()}


def _list_figures(counts: Mapping[str, int], rows: int, catalogue: int | None) -> dict[str, Any]:
    """``rows``, ``mean_length``, ``distinct``, ``coverage`` and ``top_share`` of slot ``counts``."""
    total = sum(counts.values())
    top = sorted(counts.values(), reverse=True)[:TOP_SHARE_VALUES]
    return {"rows": rows, "mean_length": total / rows if rows else 0.0, "distinct": len(counts),
            "coverage": len(counts) / catalogue if catalogue else None,
            "top_share": sum(top) / total if total else 0.0}


def list_profile(values: pl.Series, catalogue: int | None = None) -> dict[str, Any]:
    """Profile of a list-valued output (recommended items): slot shares of the most recommended values,
    ``other``, and the summary figures of the module docstring."""
    counts = _list_counts(values)
    total = max(sum(counts.values()), 1)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
    shares = [n / total for _, n in top]
    return {"kind": "list", **_list_figures(counts, values.len(), catalogue), "catalogue": catalogue,
            "categories": [v for v, _ in top], "proportions": shares,
            "other": max(0.0, 1.0 - sum(shares)) if counts else 0.0}


def _list_row(name: str, ref: Mapping[str, Any], counts: Mapping[str, int], rows: int) -> dict[str, Any]:
    """The drift-table row of one list output: PSI of the slot shares, new figures next to the reference's."""
    total = sum(counts.values())
    if total:
        shares = [counts.get(c, 0) / total for c in ref["categories"]]
        value = psi([*ref["proportions"], ref["other"]], [*shares, max(0.0, 1.0 - sum(shares))])
    else:
        value = float("nan")
    figures = _list_figures(counts, rows, ref.get("catalogue"))
    return {"feature": name, "kind": "list", "psi": value, "status": status(value),
            **{k: figures[k] for k in ("coverage", "distinct", "top_share")},
            **{f"reference_{k}": ref.get(k) for k in ("coverage", "distinct", "top_share")}}


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
        # List outputs (top-k items): slots per value, bounded by the catalogue, and rows seen.
        self.lists: dict[str, dict[str, int]] = {name: {} for name in reference.get("outputs") or {}}
        self.list_rows: dict[str, int] = dict.fromkeys(self.lists, 0)

    @staticmethod
    def _numeric_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
        import numpy as np

        values = np.asarray(values, dtype=np.float64).reshape(-1)
        missing = np.isnan(values)
        counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=np.float64), values[~missing], side="left"),
                             minlength=len(edges) + 1)
        return np.append(counts, missing.sum())

    def add(self, frame: pl.DataFrame | None = None, scores: np.ndarray | None = None, *,
            outputs: pl.DataFrame | None = None) -> None:
        """Count ``frame``'s rows (validated input), ``scores`` (the score column of the output) and
        ``outputs`` (output columns; the list columns the reference profiled are counted)."""
        import numpy as np

        if outputs is not None:
            for name, counts in self.lists.items():
                if name in outputs.columns:
                    values = outputs.get_column(name)
                    self.list_rows[name] += values.len()
                    for value, n in _list_counts(values).items():
                        counts[value] = counts.get(value, 0) + n

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
        """One row per feature, then ``score``, then list outputs, as :func:`compare` returns them."""
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
        for name, counts in self.lists.items():
            if self.list_rows[name]:
                rows.append(_list_row(name, self.reference["outputs"][name], counts, self.list_rows[name]))
        return rows


def compare(reference: Mapping[str, Any], frame: pl.DataFrame,
            scores: np.ndarray | None = None, *, outputs: pl.DataFrame | None = None) -> list[dict[str, Any]]:
    """PSI of each profiled feature (and of the score when both sides have one) on new rows.

    Args:
        outputs: the scoring output's columns; each list column profiled in the reference gets a row
            of kind ``list`` (PSI of the recommended values' slot shares, plus the new ``coverage``,
            ``distinct`` and ``top_share`` next to the reference's as ``reference_<name>``).

    Returns:
        One row per feature in the reference's order, then ``score``, then list outputs:
        ``{"feature", "kind", "psi", "status"}`` with ``kind`` numeric/categorical/score/list; ``psi``
        is NaN (status ``unknown``) when ``frame`` has no rows.
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
    if outputs is not None:
        for name, ref in (reference.get("outputs") or {}).items():
            if name not in outputs.columns:
                continue
            values = outputs.get_column(name)
            rows.append(_list_row(name, ref, _list_counts(values), values.len()))
    return rows
