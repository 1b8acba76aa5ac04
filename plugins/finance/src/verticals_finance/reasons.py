"""Reason codes: the features that pushed an applicant's PD up the most (numpy + polars, no torch).

The exported graph's second output holds, per applicant and feature, the feature's exact
contribution to the logit relative to a background sample of training applicants (see
:mod:`verticals_finance.model`). Here those contributions are converted to scorecard points
(``points_lost = contribution * a * factor``: the Platt slope ``a`` and the PDO factor), and each
applicant's reasons are the features that cost the most points, largest first:

* only features with a positive cost of at least ``min_points`` (a feature that *lowers* the risk is
  never a reason);
* only features the model uses (``used``): a feature whose contribution never moves on the
  validation split (spread below ``USED_SPREAD`` logits) is left out, even if rounding gives it a
  tiny positive value;
* at most ``top`` reasons (4, the number adverse-action notices usually give).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = ["MIN_POINTS", "TOP_REASONS", "USED_SPREAD", "reason_codes", "used_features"]

TOP_REASONS = 4
MIN_POINTS = 0.5
#: A feature is "used" when its contribution varies by more than this (logits) across applicants.
USED_SPREAD = 1e-3


def used_features(contributions: np.ndarray, names: Sequence[str], spread: float = USED_SPREAD) -> list[str]:
    """Names of the features whose contribution varies across the rows (max − min > ``spread``)."""
    import numpy as np

    c = np.asarray(contributions, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] == 0:
        return list(names)
    width = c.max(axis=0) - c.min(axis=0)
    return [name for name, w in zip(names, width, strict=True) if w > spread]


def reason_codes(points_lost: np.ndarray, names: Sequence[str], *, used: Sequence[str] | None = None,
                 top: int = TOP_REASONS, min_points: float = MIN_POINTS) -> tuple[pl.Series, pl.Series]:
    """Per row, the names of the top reasons and the points each cost (both list columns).

    Args:
        points_lost: [N, F] points each feature costs relative to the background (positive = riskier).
        names: the F feature names, in the columns' order.
        used: features allowed as reasons (default: all).
        top: reasons per row at most.
        min_points: smallest cost that counts as a reason.
    """
    import numpy as np
    import polars as pl

    lost = np.asarray(points_lost, dtype=np.float64)
    n, f = lost.shape if lost.ndim == 2 else (lost.shape[0], 0)
    k = max(0, min(top, f))
    if n == 0 or k == 0:
        empty_names = pl.Series("reasons", [[] for _ in range(n)], dtype=pl.List(pl.String))
        empty_points = pl.Series("reason_points", [[] for _ in range(n)], dtype=pl.List(pl.Float64))
        return empty_names, empty_points
    allowed = np.ones(f, dtype=bool) if used is None else np.isin(np.asarray(names, dtype=object),
                                                                   np.asarray(list(used), dtype=object))
    masked = np.where(allowed[None, :] & (lost >= min_points), lost, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(masked, order, axis=1)
    keep = np.isfinite(picked)
    vocabulary = pl.Series("names", list(names), dtype=pl.String)
    name_cols = {f"r{i}": vocabulary.gather(pl.Series(order[:, i], dtype=pl.UInt32).set(
        pl.Series(~keep[:, i]), None)) for i in range(k)}
    point_cols = {f"p{i}": pl.Series(np.where(keep[:, i], np.round(picked[:, i], 1), np.nan))
                  .fill_nan(None) for i in range(k)}
    frame = pl.DataFrame({**name_cols, **point_cols})
    out = frame.select(
        pl.concat_list([f"r{i}" for i in range(k)]).list.drop_nulls().alias("reasons"),
        pl.concat_list([f"p{i}" for i in range(k)]).list.drop_nulls().alias("reason_points"),
    )
    return out.get_column("reasons"), out.get_column("reason_points")
