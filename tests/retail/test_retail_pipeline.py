"""retail.movielens end to end on a small generated log: train (model + baselines in one run), export
with top-k in the graph, register with the catalogue artifact, then score event logs the way users do."""

from __future__ import annotations

import json

import polars as pl
import pytest
from retail_support import ITEMS, LIST, NAME, small_log, small_plugin
from verticals import engine
from verticals.errors import UserError
from verticals.scoring import score
from verticals.testing import use_plugins

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

EPOCHS = 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("retail-home")
    plugin = small_plugin()
    with use_plugins({"retail": plugin}):
        result = engine.train(NAME, epochs=EPOCHS, home=home, progress=False)
    return plugin, home, result


def _score(plugin, home, frame_or_path, out, **kw):
    path = frame_or_path
    if isinstance(frame_or_path, pl.DataFrame):
        path = out.parent / f"{out.name}-input.parquet"
        frame_or_path.write_parquet(path)
    with use_plugins({"retail": plugin}):
        manifest = score(NAME, path, out, home=home, progress=False, **kw)
    return manifest, pl.read_parquet(sorted(out.glob("part-*.parquet"))).sort("user")


def test_metrics_json_has_the_model_and_the_three_baselines_under_the_agreed_keys(trained):
    _, _, result = trained
    metrics = json.loads((result.report_path.parent / "metrics.json").read_text())
    for key in ("recall@10", "ndcg@10", "coverage@10", "popularity_bias@10"):
        assert 0.0 <= metrics["test"][key] <= 1.0
    assert set(metrics["baselines"]) == {"popularity", "item_knn", "ease"}
    for values in metrics["baselines"].values():
        assert 0.0 <= values["ndcg@10"] <= values["recall@10"] <= 1.0
    # The planted clusters make co-occurrence informative: kNN and EASE beat popularity by far.
    assert metrics["baselines"]["item_knn"]["recall@10"] > 2 * metrics["baselines"]["popularity"]["recall@10"]
    curve = metrics["test"]["recall_curve"]
    values = [curve[str(k)] for k in range(1, LIST + 1)]
    assert values == sorted(values) and values[9] == pytest.approx(metrics["test"]["recall@10"])
    extras = result.manifest["extras"]
    assert extras["ease_lambda"] in (10.0, 100.0) and set(extras["ease_lambda_validation_ndcg"]) == {"10", "100"}
    assert extras["best_on_validation"] in ("model", "popularity", "item_knn", "ease")
    assert extras["catalogue_items"] == ITEMS and extras["list_length"] == LIST
    report = result.report_path.read_text()
    assert "model against the baselines" in report and "Example users" in report and "EASE" in report
    assert "held-out next item" in report and "retail_coverage_bias.png" in report
    # The plugin's comparison section fills the baselines' rows with this run's figures.
    from verticals.report import fmt

    section = report[report.rindex("model against the baselines"):]
    section = section[: section.find("<h2", 1)]
    assert fmt(metrics["baselines"]["ease"]["recall@10"]) in section
    assert fmt(metrics["baselines"]["popularity"]["ndcg@10"]) in section
    assert (result.report_path.parent / "figures" / "retail_recall_at_k.png").is_file()


def test_catalogue_is_an_artifact_and_parity_holds(trained):
    _, _, result = trained
    catalogue = pl.read_parquet(result.path / "artifacts" / "catalogue.parquet")
    assert catalogue.height == ITEMS and catalogue.get_column("item").is_unique().all()
    log = small_log()
    assert catalogue.get_column("popularity").sum() <= log.height
    # the table is a sha256-verified file of the version, not manifest JSON
    assert catalogue["item"][0] not in json.dumps(result.manifest["extras"])
    assert any("catalogue" in name for name in result.manifest["artifacts"])
    assert result.manifest["parity"]
    # the known histories grow with the users: a file of the version too, the manifest holds a reference
    known = result.manifest["preprocessor"]["known"]
    assert known == {"$file": "preprocessor/known.parquet", "kind": "parquet"}
    histories = pl.read_parquet(result.path / known["$file"])
    assert histories.columns == ["user", "items"] and histories.get_column("user").is_unique().all()
    assert histories.height == log.get_column("user").n_unique()
    assert "preprocessor/known.parquet" in result.manifest["artifacts"]  # sha256-checked when scoring opens it


def test_a_time_sorted_log_spread_over_row_groups_and_files_scores_each_user_once_with_their_whole_history(
        trained, tmp_path):
    plugin, home, _ = trained
    log = small_log(40, seed=0).with_columns(pl.col("user") + "-new")  # new users, known catalogue
    assert log.get_column("timestamp").is_sorted()
    folder = tmp_path / "log"
    folder.mkdir()
    half = log.height // 2
    log.head(half).write_parquet(folder / "a.parquet", row_group_size=37)
    log.tail(log.height - half).write_parquet(folder / "b.parquet", row_group_size=37)
    manifest, out = _score(plugin, home, folder, tmp_path / "spread")
    by_user = log.sort("user", "timestamp", maintain_order=True)
    _, whole = _score(plugin, home, by_user, tmp_path / "whole")
    assert out.height == log.get_column("user").n_unique() == manifest["rows_out"]
    assert out.get_column("user").is_unique().all()
    assert manifest["rows_in"] == manifest["rows_scored"] == log.height
    assert out.select("user", "items").equals(whole.select("user", "items"))
    # never an item the user has seen, always k (default 10) of them
    seen = log.group_by("user").agg(pl.col("item"))
    joined = out.join(seen, on="user")
    for items, history in zip(joined["items"].to_list(), joined["item"].to_list(), strict=True):
        assert len(items) == 10 and not set(items) & set(history)
    assert out.get_column("model_version").unique().to_list() == [1]


def test_k_chooses_the_list_length_and_is_bounded(trained, tmp_path):
    plugin, home, _ = trained
    log = small_log(10, seed=2).with_columns(pl.col("user") + "-k")
    _, out = _score(plugin, home, log, tmp_path / "k5", params={"k": 5})
    assert out.get_column("items").list.len().to_list() == [5] * out.height
    _, longest = _score(plugin, home, log, tmp_path / "k30", params={"k": LIST})
    assert longest.get_column("items").list.len().min() == LIST
    assert [row[:5] for row in longest["items"].to_list()] == out["items"].to_list()
    with pytest.raises(UserError, match=r"k=0 of pipeline retail.movielens is below its minimum 1"):
        _score(plugin, home, log, tmp_path / "k0", params={"k": 0})
    with pytest.raises(UserError, match=rf"k={LIST + 1} .* larger than its maximum {LIST} \(this model version "
                                        rf"exports the best {LIST} of its {ITEMS} catalogue items"):
        _score(plugin, home, log, tmp_path / "k31", params={"k": LIST + 1})
    with pytest.raises(UserError, match="has no scoring parameter 'depth'"):
        _score(plugin, home, log, tmp_path / "depth", params={"depth": 3})
    assert not (tmp_path / "k0").exists() and not (tmp_path / "k31").exists()


def test_cli_k_option(trained, tmp_path, capsys, monkeypatch):
    from verticals.cli import main

    plugin, home, _ = trained
    path = tmp_path / "in.parquet"
    small_log(8, seed=3).write_parquet(path)
    monkeypatch.setenv("VERTICALS_HOME", str(home))
    with use_plugins({"retail": plugin}):
        main(["score", NAME, "-i", str(path), "-o", str(tmp_path / "o"), "--k", "3", "--no-progress"])
        out = pl.read_parquet(tmp_path / "o" / "part-00000.parquet")
        assert out.get_column("items").list.len().to_list() == [3] * out.height
        with pytest.raises(SystemExit) as exit_info:
            main(["score", NAME, "-i", str(path), "-o", str(tmp_path / "o2"), "--k", "100000", "--no-progress"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "k=100000" in err[0] and f"at most {LIST}" in err[0]


def test_cold_start_unknown_items_duplicates_and_unknown_users_are_flagged(trained, tmp_path):
    plugin, home, result = trained
    catalogue = pl.read_parquet(result.path / "artifacts" / "catalogue.parquet")
    popular = catalogue.with_row_index().sort(["popularity", "index"], descending=[True, False])["item"].to_list()
    known = catalogue["item"].to_list()
    t = pl.datetime(2026, 3, 1)
    frame = pl.DataFrame({
        "user": ["cold", "cold", "dup", "dup", "dup", "mixed", "mixed"],
        "timestamp": [1, 2, 1, 2, 3, 1, 2],
        "item": ["never-sold-1", "never-sold-2", known[0], known[0], known[1], known[2], "never-sold-3"],
    }).with_columns((t + pl.duration(hours=pl.col("timestamp"))).alias("timestamp"))
    _, out = _score(plugin, home, frame, tmp_path / "flags")
    rows = {r["user"]: r for r in out.iter_rows(named=True)}
    assert rows["cold"]["flags"] == "history:empty,unknown_items:2"
    assert rows["cold"]["items"] == popular[:10]  # cold start: popularity
    assert rows["dup"]["flags"] == "duplicates:1" and not {known[0], known[1]} & set(rows["dup"]["items"])
    assert rows["mixed"]["flags"] == "unknown_items:1" and known[2] not in rows["mixed"]["items"]
    # a users file: ids only; known users get their training history, unknown ones popularity
    train_user = small_log()["user"][0]
    users = pl.DataFrame({"user": [train_user, "stranger"]})
    _, by_id = _score(plugin, home, users, tmp_path / "users")
    rows = {r["user"]: r for r in by_id.iter_rows(named=True)}
    assert rows["stranger"]["flags"] == "user:unknown,history:empty" and rows["stranger"]["items"] == popular[:10]
    assert rows[train_user]["flags"] == "" and rows[train_user]["items"] != popular[:10]


def test_bad_interaction_files(trained, tmp_path):
    plugin, home, _ = trained
    log = small_log(12, seed=4).with_columns(pl.col("user") + "-bad")
    # no user column: one-line error naming it
    with pytest.raises(Exception, match="user") as info:
        _score(plugin, home, log.drop("user"), tmp_path / "nouser")
    assert "\n" not in str(info.value)
    # missing timestamps: those rows are rejected with a reason, the rest is scored
    holes = log.with_columns(pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("timestamp"))
                             .alias("timestamp"))
    manifest, out = _score(plugin, home, holes, tmp_path / "holes")
    rejects = pl.read_parquet(tmp_path / "holes" / "_rejects.parquet")
    assert manifest["rows_rejected"] == rejects.height == (log.height + 6) // 7
    assert rejects.get_column("_reason").str.contains("timestamp").all()
    assert manifest["rows_in"] == manifest["rows_scored"] + manifest["rows_rejected"]
    assert out.height == log.get_column("user").n_unique()
    # non-monotonic timestamps: the file's order does not matter, time does
    shuffled = log.sample(fraction=1.0, shuffle=True, seed=1)
    _, a = _score(plugin, home, shuffled, tmp_path / "shuffled")
    _, b = _score(plugin, home, log, tmp_path / "ordered")
    assert a.select("user", "items").equals(b.select("user", "items"))
    # integer ids, and a column mixing numbers and text (CSV): read as strings
    numbered = log.with_columns(pl.col("user").rank("dense").cast(pl.Int64).alias("user"))
    _, ints = _score(plugin, home, numbered, tmp_path / "ints")
    assert ints.get_column("user").dtype == pl.String and ints.height == log.get_column("user").n_unique()
    csv = tmp_path / "mixed.csv"
    numbered.with_columns(pl.when(pl.col("user") % 2 == 0).then(pl.format("u{}", pl.col("user")))
                          .otherwise(pl.col("user").cast(pl.String)).alias("user")).write_csv(csv)
    _, mixed = _score(plugin, home, csv, tmp_path / "mixed")
    assert mixed.height == ints.height and set(mixed["user"]) >= {"1", "u2"}


def test_own_interaction_csv_with_integer_ids_trains_and_scores(tmp_path):
    log = small_log(120, seed=5)
    items = {name: i + 1000 for i, name in enumerate(sorted(set(log["item"])))}
    own = log.select(pl.col("user").str.slice(1).cast(pl.Int64).alias("user"),
                     pl.col("item").replace_strict(items, return_dtype=pl.Int64).alias("item"),
                     pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S").alias("timestamp"),
                     pl.lit(5).alias("rating"))
    path = tmp_path / "own.csv"
    own.write_csv(path)
    home = tmp_path / "home"
    plugin = small_plugin(users=10)  # the default data is not used: --data replaces it
    with use_plugins({"retail": plugin}):
        result = engine.train(NAME, data=path, epochs=1, home=home, progress=False)
    catalogue = pl.read_parquet(result.path / "artifacts" / "catalogue.parquet")
    assert set(catalogue["item"].to_list()) <= {str(v) for v in items.values()}
    assert result.manifest["training_data"]["rows"] == own.height
    users = pl.DataFrame({"user": [int(own["user"][0]), 999_999]})
    _, out = _score(plugin, home, users, tmp_path / "recs")
    rows = {r["user"]: r for r in out.iter_rows(named=True)}
    assert rows[str(own["user"][0])]["flags"] == "" and rows["999999"]["flags"] == "user:unknown,history:empty"
    assert all(item.isdigit() for item in rows["999999"]["items"])
