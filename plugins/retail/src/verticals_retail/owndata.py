"""A user's own interaction log through the core's own-data mechanism: template ``retail.interactions``.

A config names the log and its columns; the file is used as it is (no renaming, no editing)::

    name = "my_shop"
    template = "retail.interactions"
    data = "orders.csv"               # CSV or Parquet, one row per interaction
    description = "web shop orders"

    [interactions]
    user = "customer_id"              # default "user"; ids may be strings or integers
    item = "sku"                      # default "item"
    timestamp = "ordered_at"          # default "timestamp"; a datetime, a date, or Unix seconds
    rating = "stars"                  # optional: a rating, or a weight such as a quantity
    min_rating = 4                    # with rating: rows at or above it are positives (default 4)
    min_positives = 5                 # users with fewer positives stay wholly in training (default 5)

    [items]                           # optional: an item table, for titles in the report
    data = "catalogue.csv"            # relative to the config file
    id = "sku"                        # default: the [interactions] item column's name
    title = "name"

Rows below ``min_rating`` are not positives and are left out of the log (neither history nor a
held-out item), as for MovieLens. The split is the retail default: leave-last per user by time, seeded
ties, users with at least ``min_positives`` positives give their last one to test and the one before to
validation.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl
    from verticals.owndata import DataTemplate, OwnDataConfig
    from verticals.pipeline import Pipeline
    from verticals.spec import Column, DatasetSpec

__all__ = ["interactions_template"]

_KEYS = {"user", "item", "timestamp", "rating", "min_rating", "min_positives"}
_ITEM_KEYS = {"data", "id", "title"}
MIN_ROWS = 50


def _columns(config: OwnDataConfig) -> dict[str, Any]:
    return config.options


def _parse(config: OwnDataConfig) -> dict[str, Any]:
    from verticals.spec import SplitSpec

    from verticals_retail.plugin import MIN_POSITIVES

    raw = config.raw.get("interactions") or {}
    if not isinstance(raw, dict) or set(raw) - _KEYS:
        bad = sorted(set(raw) - _KEYS) if isinstance(raw, dict) else raw
        raise config.fail(f"[interactions] has unknown key(s) {bad}", f"use {', '.join(sorted(_KEYS))}")
    if config.ids or config.numeric or config.categorical:
        raise config.fail("'id' and [features] do not apply to an interaction log",
                          "name the columns under [interactions]: user, item, timestamp (and rating)")
    names = {key: raw.get(key, key) for key in ("user", "item", "timestamp")}
    rating = raw.get("rating")
    for key, value in [*names.items(), ("rating", rating)]:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise config.fail(f"interactions.{key} = {value!r}", f'write the column\'s name, e.g. {key} = "{key}"')
    used = [v for v in [*names.values(), rating] if v is not None]
    if len(set(used)) != len(used):
        raise config.fail(f"[interactions] names a column twice: {used}", "name a different column for each role")
    min_rating = raw.get("min_rating", 4)
    if isinstance(min_rating, bool) or not isinstance(min_rating, int | float):
        raise config.fail(f"interactions.min_rating = {min_rating!r}", "use a number, e.g. min_rating = 4")
    if "min_rating" in raw and rating is None:
        raise config.fail("interactions.min_rating is set but no rating column is named",
                          'add rating = "COLUMN", or remove min_rating')
    min_positives = raw.get("min_positives", MIN_POSITIVES)
    if isinstance(min_positives, bool) or not isinstance(min_positives, int) or min_positives < 3:
        raise config.fail(f"interactions.min_positives = {min_positives!r}",
                          "use a whole number of at least 3 (history, a validation item and a test item)")
    config.split = SplitSpec("leave_last", holdout=1, min_rows=int(min_positives))

    items = config.raw.get("items")
    table: dict[str, str] | None = None
    if items is not None:
        if not isinstance(items, dict) or set(items) - _ITEM_KEYS or "data" not in items or "title" not in items:
            raise config.fail(f"[items] needs data and title (and optionally id), got {items!r}",
                              '[items]\ndata = "catalogue.csv"\nid = "sku"\ntitle = "name"')
        path = Path(str(items["data"])).expanduser()
        if not path.is_absolute():
            path = ((config.base or config.path.parent) / path).absolute()
        if not path.is_file():
            raise config.fail(f"items.data {path} does not exist", "fix the item table's path (relative to the config)")
        table = {"data": str(path), "id": str(items.get("id", names["item"])), "title": str(items["title"])}
        _item_titles(table, config)  # checked at registration: columns present, ids unique
    return {**names, "rating": rating, "min_rating": float(min_rating), "min_positives": int(min_positives),
            "items": table}


def _item_titles(table: dict[str, str], config: OwnDataConfig | None = None) -> dict[str, str]:
    """Item id (as text) → title, from the item table."""
    import polars as pl
    from verticals.owndata import OwnDataError, read_data

    frame = read_data(Path(table["data"]))
    for key in ("id", "title"):
        if table[key] not in frame.columns:
            message = (f"item table {table['data']} has no column '{table[key]}' (items.{key}); its columns are "
                       f"{', '.join(frame.columns[:20])}")
            if config is not None:
                raise config.fail(message, f"set items.{key} to one of them")
            raise OwnDataError(message, hint=f"set items.{key} in the config to one of them")
    frame = frame.select(pl.col(table["id"]).cast(pl.String).str.strip_chars().alias("item"),
                         pl.col(table["title"]).cast(pl.String).alias("title")).drop_nulls("item")
    return dict(zip(frame.get_column("item").to_list(), frame.get_column("title").to_list(), strict=True))


def _read(config: OwnDataConfig) -> pl.DataFrame:
    """The log as ``user``, ``timestamp``, ``item`` (positives only when a rating column is named)."""
    import polars as pl
    from verticals.owndata import OwnDataError, read_data

    opts = _columns(config)
    assert config.data is not None
    frame = read_data(config.data)
    for key in ("user", "item", "timestamp", "rating"):
        column = opts.get(key)
        if column is not None and column not in frame.columns:
            close = difflib.get_close_matches(column, frame.columns, n=1, cutoff=0.6)
            raise OwnDataError(f"data config {config.path}: interactions.{key} names column '{column}', which data "
                               f"file {config.data} does not have",
                               hint=f"did you mean '{close[0]}'?" if close else
                               f"its columns are: {', '.join(frame.columns[:30])}")
    out = frame
    if opts["rating"] is not None:
        value = frame.get_column(opts["rating"]).cast(pl.Float64, strict=False)
        bad = value.is_null() & frame.get_column(opts["rating"]).is_not_null()
        if bool(bad.any()):
            first = frame.get_column(opts["rating"]).filter(bad).head(1).to_list()[0]
            raise OwnDataError(f"data file {config.data}: rating column '{opts['rating']}' holds {first!r}, not a "
                               f"number ({int(bad.sum())} rows)", hint="fix or remove those rows")
        out = frame.filter(value >= opts["min_rating"])
    return out.select(pl.col(opts["user"]).cast(pl.String).alias("user"),
                      pl.col(opts["timestamp"]).alias("timestamp"),
                      pl.col(opts["item"]).cast(pl.String).alias("item"))


def _schema(config: OwnDataConfig, columns: list[Column]) -> list[Column]:
    from verticals_retail.data import interactions_schema

    return list(interactions_schema().columns)


def _pipeline(config: OwnDataConfig, dataset: DatasetSpec) -> Pipeline:
    from verticals_retail.pipeline import RecommendationPipeline

    table = config.options.get("items")
    return RecommendationPipeline(
        name=config.name, dataset=config.name, items_table=dict(table) if table else {},
        description=config.description or f"the next items per user of {config.name}")


def item_titles(pipe: Any) -> dict[str, str]:
    """The item table's titles of a pipeline made from a config (empty without one)."""
    table = getattr(pipe, "items_table", None)
    return _item_titles(table) if table else {}


def interactions_template() -> DataTemplate:
    from verticals.owndata import DataTemplate

    return DataTemplate(
        name="interactions", pipeline=_pipeline, read=_read, parse=_parse, adjust_schema=_schema, task="ranking",
        splits=("leave_last",), min_rows=MIN_ROWS,
        description="a user–item interaction log (user, item, timestamp, optional rating or weight) → top-k per user",
        sections={"interactions": "columns: user, item, timestamp, rating; min_rating, min_positives",
                  "items": "an item table for titles: data, id, title"},
        example="docs/retail.md")
