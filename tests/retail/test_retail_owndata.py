"""retail.interactions: a shop's own order log, used as it is, through ``verticals data register``."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from verticals.owndata import OwnDataError, register_config
from verticals.testing import use_plugins
from verticals.testing.ranking import make_interactions
from verticals_retail import plugin

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

CONFIG = """name = "my_shop"
template = "retail.interactions"
data = "orders.csv"

[interactions]
user = "customer_id"
item = "sku"
timestamp = "ordered_at"
rating = "stars"
min_rating = 4

[items]
data = "catalogue.csv"
id = "sku"
title = "name"
"""


@pytest.fixture
def shop(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTICALS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VERTICALS_DATA_CONFIG", raising=False)
    log = make_interactions(200, seed=3)
    # The shop's own layout: its column names, integer customer ids, ISO timestamps, a star rating
    # (every fourth order rated 2: not a positive), and a catalogue with product names.
    orders = log.with_row_index().select(
        pl.col("user").str.slice(1).cast(pl.Int64).alias("customer_id"),
        pl.col("item").alias("sku"),
        pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S").alias("ordered_at"),
        pl.when(pl.col("index") % 4 == 3).then(2).otherwise(5).alias("stars"))
    orders.write_csv(tmp_path / "orders.csv")
    items = log.select("item").unique().sort("item")
    items.select(pl.col("item").alias("sku"), ("Product " + pl.col("item")).alias("name")).write_csv(
        tmp_path / "catalogue.csv")
    with use_plugins({"retail": plugin}):
        yield tmp_path, orders


def _write(folder: Path, text: str) -> Path:
    (folder / "shop.toml").write_text(text)
    return folder / "shop.toml"


def test_an_own_order_log_registers_unedited_trains_and_scores(shop):
    from verticals.engine import train
    from verticals.scoring import score

    folder, orders = shop
    config, summary = register_config(_write(folder, CONFIG))
    assert config.split.strategy == "leave_last" and config.split.min_rows == 5
    positives = orders.filter(pl.col("stars") >= 4)
    assert summary["rows"] == positives.height  # rated 2: not positives, left out of the log
    with use_plugins({"retail": plugin}):
        result = train("retail.my_shop", epochs=1, progress=False, variants=())
        metrics = json.loads((result.path / "metrics.json").read_text())
        assert set(metrics["baselines"]) == {"popularity", "item_knn", "ease"}
        assert 0 <= metrics["test"]["recall@10"] <= 1
        # titles from the item table in the report's example users
        assert "Product sku-" in result.report_path.read_text()
        # this week's orders of five customers, in the interactions layout the model was trained on
        some = positives.filter(pl.col("customer_id").is_in(positives["customer_id"].unique().head(5).implode()))
        some.select(pl.col("customer_id").alias("user"), pl.col("sku").alias("item"),
                    pl.col("ordered_at").alias("timestamp")).write_csv(folder / "week.csv")
        manifest = score("retail.my_shop", folder / "week.csv", folder / "out", progress=False)
    out = pl.read_parquet(sorted((folder / "out").glob("part-*.parquet")))
    assert manifest["rows_in"] == some.height and out.height == 5
    seen = some.group_by(pl.col("customer_id").cast(pl.String)).agg("sku")
    for user, items in out.select("user", "items").iter_rows():
        history = set(seen.filter(pl.col("customer_id") == user)["sku"][0])
        assert items and not history & set(items)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('item = "sku"', 'item = "skus"', "names column 'skus', which data file"),
    ('rating = "stars"\n', "", "min_rating is set but no rating column is named"),
    ('min_rating = 4', 'min_rating = "four"', "interactions.min_rating = 'four'"),
    ('[interactions]', '[target]\ncolumn = "stars"\n\n[interactions]', "[target] does not apply"),
    ('title = "name"', 'title = "label"', "has no column 'label' (items.title)"),
    ('user = "customer_id"', 'user = "sku"', "names a column twice"),
])
def test_config_mistakes_are_named_at_registration(shop, old, new, message):
    folder, _ = shop
    with pytest.raises(OwnDataError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        register_config(_write(folder, CONFIG.replace(old, new)))


def test_a_rating_that_is_not_a_number_is_named(shop):
    folder, orders = shop
    orders.with_columns(pl.when(pl.col("customer_id") == orders["customer_id"][0]).then(pl.lit("five"))
                        .otherwise(pl.col("stars").cast(pl.String)).alias("stars")).write_csv(folder / "orders.csv")
    with pytest.raises(OwnDataError, match="rating column 'stars' holds 'five', not a number"):
        register_config(_write(folder, CONFIG))


def test_a_users_file_after_training_never_gets_an_item_from_the_users_whole_log(shop):
    """The known histories are the whole log, held-out (validation and test) items included."""
    from verticals.engine import train
    from verticals.scoring import score

    folder, orders = shop
    register_config(_write(folder, CONFIG))
    positives = orders.filter(pl.col("stars") >= 4).with_columns(pl.col("customer_id").cast(pl.String))
    with use_plugins({"retail": plugin}):
        train("retail.my_shop", epochs=1, progress=False, variants=())
        users = positives.select(pl.col("customer_id").unique().sort().alias("user"))
        users.write_csv(folder / "users.csv")
        manifest = score("retail.my_shop", folder / "users.csv", folder / "out", progress=False, params={"k": 60})
    out = pl.read_parquet(sorted((folder / "out").glob("part-*.parquet")))
    assert manifest["rows_in"] == out.height == users.height
    logs = dict(positives.group_by("customer_id").agg("sku").iter_rows())
    assert all(items and not set(logs[user]) & set(items) for user, items in out.select("user", "items").iter_rows())
