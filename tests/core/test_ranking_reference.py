"""The ranking reference pipeline: interactions → grouped examples → top-k in the graph → item ids.

One training run (module fixture, 3 epochs on 400 generated users) feeds the end-to-end tests: export
with ``indices`` parity, registration with the catalogue artifact and a list-output drift profile, and
recommendations computed through ONNX Runtime that never contain an item the user has seen. The
preprocessor and the metrics are checked on hand-made frames.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from verticals import engine
from verticals.spec import CONTEXT, ScoringContext
from verticals.testing import use_plugins
from verticals.testing.ranking import (
    NO_HISTORY,
    UNKNOWN_TARGET,
    RankingPipeline,
    RankingPlugin,
    RankingPreprocessor,
    make_interactions,
)

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

NAME = "ranking.next_item"
EPOCHS = 3


# -- generator ---------------------------------------------------------------------------------------------
def test_generator_is_a_seeded_time_ordered_event_log_with_string_ids():
    frame = make_interactions(60, seed=3)
    assert frame.equals(make_interactions(60, seed=3))
    assert not frame.equals(make_interactions(60, seed=4))
    assert frame.schema == pl.Schema({"user": pl.String, "timestamp": pl.Datetime("us"), "item": pl.String})
    assert frame.get_column("timestamp").is_sorted()
    # Users interleave over the file (the normal case scoring must group), and never repeat an item.
    assert frame.get_column("user").rle_id().max() + 1 > 2 * frame.get_column("user").n_unique()
    assert frame.group_by("user").agg(pl.col("item").n_unique() == pl.len()).get_column("item").all()
    assert frame.get_column("item").str.starts_with("sku-").all()
    # New users of the same catalogue: other users, same items.
    later = make_interactions(60, seed=3, start=1000)
    assert set(later.get_column("item")) <= set(make_interactions(400, seed=3).get_column("item"))
    assert not set(later.get_column("user")) & set(frame.get_column("user"))


def test_generator_plants_clusters_users_prefer():
    frame = make_interactions(300, seed=0, planted=True)
    assert frame.drop("user_cluster", "item_cluster").equals(make_interactions(300, seed=0))
    # Most interactions are with the user's own cluster, far above what cluster sizes alone give.
    own = (frame.get_column("user_cluster") == frame.get_column("item_cluster")).mean()
    by_chance = (frame.get_column("item_cluster").value_counts(normalize=True).get_column("proportion") ** 2).sum()
    assert own > 0.75 > 2 * by_chance
    # Popularity is uneven (the baseline has something to find) and every item id is unique per cluster.
    counts = frame.get_column("item").value_counts().get_column("count")
    assert counts.max() > 4 * counts.min()
    assert frame.group_by("item").agg(pl.col("item_cluster").n_unique()).get_column("item_cluster").max() == 1


# -- preprocessor ------------------------------------------------------------------------------------------
def _rows(spec: list[tuple[str, int, str, bool]]) -> pl.DataFrame:
    base = dt.datetime(2026, 3, 1)
    return pl.DataFrame({"user": [u for u, *_ in spec],
                         "timestamp": [base + dt.timedelta(hours=h) for _, h, *_ in spec],
                         "item": [i for _, _, i, _ in spec],
                         CONTEXT: [c for *_, c in spec]})


def _fitted(items: int = 30, max_history: int = 4, top_k: int = 3) -> RankingPreprocessor:
    pre = RankingPreprocessor(max_history=max_history, top_k=top_k)
    names = [f"i{j:02d}" for j in range(items)]
    # Popularity: i00 most popular, then i01, ... (counts decrease).
    pre.fit(pl.DataFrame({"item": [n for j, n in enumerate(names) for _ in range(items - j)]}))
    return pre


def test_examples_are_non_context_rows_with_earlier_rows_as_history():
    pre = _fitted()
    frame = _rows([
        ("b", 5, "i07", False),                         # b: first row, no history → skipped
        ("a", 1, "i01", True), ("a", 2, "i02", True),   # a: history (context) ...
        ("a", 3, "i03", True), ("a", 4, "zzz", True),   # ... with an unknown item, masked
        ("a", 6, "i05", True), ("a", 7, "i04", False),  # a: the held-out row
        ("b", 8, "nope", False),                        # b: held-out item unknown → skipped
    ])
    batch = pre.transform(frame.sample(fraction=1.0, shuffle=True, seed=1), with_target=True)
    assert batch.ids.get_column("user").to_list() == ["a"]
    assert batch.target.tolist() == [4]
    # The 4 rows before the example, oldest first: i02, i03, zzz (masked), i05.
    assert batch.inputs["history"].tolist() == [[2, 3, 0, 5]]
    assert batch.inputs["mask"].tolist() == [[1.0, 1.0, 0.0, 1.0]]
    assert batch.skipped == {NO_HISTORY: 1, UNKNOWN_TARGET: 1}
    # The popularity baseline skips what the user has seen: i00, then i01 (seen only beyond the
    # 4-row window, so not masked), then i04.
    assert batch.aux.get_column("popular").to_list() == [[0, 1, 4]]


def test_training_rows_each_become_an_example_and_scoring_makes_one_per_user():
    pre = _fitted()
    frame = _rows([("a", h, f"i{h:02d}", False) for h in range(1, 7)] + [("c", 9, "i09", False)]).drop(CONTEXT)
    train = pre.transform(frame, with_target=True)
    assert train.target.tolist() == [2, 3, 4, 5, 6]
    assert train.inputs["history"][-1].tolist() == [2, 3, 4, 5]  # the 4 items before i06
    assert train.inputs["mask"][0].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert train.skipped == {NO_HISTORY: 2}
    scored = pre.transform(frame, with_target=False)
    assert scored.target is None and scored.aux is None
    assert scored.ids.get_column("user").to_list() == ["a", "c"]
    assert scored.inputs["history"].tolist() == [[3, 4, 5, 6], [0, 0, 0, 9]]
    assert scored.flags.to_list() == ["", ""]
    # A user whose rows are all context (carried from an earlier batch) is not scored again; a user
    # with only unknown items is scored on the model's biases and flagged.
    carried = _rows([("a", 1, "i01", True), ("d", 2, "new", False)])
    again = pre.transform(carried, with_target=False)
    assert again.ids.get_column("user").to_list() == ["d"]
    assert again.flags.to_list() == ["history:empty"]


def test_an_empty_frame_gives_empty_batches_of_the_right_shapes():
    pre = _fitted()
    empty = _rows([]).cast({"user": pl.String, "item": pl.String, CONTEXT: pl.Boolean})
    for with_target in (True, False):
        batch = pre.transform(empty, with_target=with_target)
        assert len(batch) == 0 and batch.inputs["history"].shape == (0, 4) and batch.inputs["mask"].shape == (0, 4)
        assert batch.ids.columns == ["user"] and batch.skipped == {}


def test_state_round_trips_and_fit_refuses_a_catalogue_smaller_than_a_history():
    pre = _fitted()
    other = RankingPreprocessor()
    other.load_state(pre.state())
    frame = _rows([("a", h, f"i{h:02d}", False) for h in range(1, 7)])
    a, b = pre.transform(frame, with_target=True), other.transform(frame, with_target=True)
    assert all(np.array_equal(a.inputs[k], b.inputs[k]) for k in a.inputs)
    assert other.vocabularies() == {"item": [f"i{j:02d}" for j in range(30)]}
    from verticals.errors import PluginError

    with pytest.raises(PluginError, match="distinct items"):
        RankingPreprocessor(max_history=20).fit(pl.DataFrame({"item": ["x", "y"]}))


# -- end to end --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """Train, export, verify and register once, stage by stage."""
    home = tmp_path_factory.mktemp("home")
    with use_plugins({"ranking": RankingPlugin(users=400)}):
        loaded = engine.load_data(NAME)
        validated = engine.validate_data(NAME, loaded)
        splits = engine.split_data(NAME, validated, seed=7)
        fitted = engine.fit(NAME, splits, epochs=EPOCHS, seed=7, device="cpu", progress=False)
        from verticals.store import ModelStore

        staging = ModelStore(home).staging(NAME)
        evaluation = engine.evaluate(NAME, splits, fitted, workdir=staging)
        exported = engine.export(NAME, fitted, evaluation, staging, variants=())
        version = engine.register(NAME, validated, splits, fitted, evaluation, exported, home=home)
        yield {"home": home, "loaded": loaded, "splits": splits, "fitted": fitted, "evaluation": evaluation,
               "exported": exported, "version": version}


def test_split_holds_out_each_users_last_item_with_history_as_context(run):
    splits, frame = run["splits"], run["loaded"].frame
    users = frame.get_column("user").n_unique()
    sizes = splits.sizes()
    assert sizes["test"] == sizes["valid"] == users  # every user has ≥ 5 interactions
    last = frame.sort("timestamp").group_by("user").last()
    held = splits.test.filter(~pl.col(CONTEXT)).select("user", "item")
    assert held.sort("user").equals(last.select("user", "item").sort("user"))
    # One test example per user; its first row skipped nowhere (history comes from context).
    assert run["evaluation"].predictions["test"].height == users


def test_model_beats_the_popularity_baseline_on_the_planted_data(run):
    test = run["evaluation"].metrics["test"]
    popular = test["popularity"]
    assert 0.0 < popular["ndcg@10"] < test["ndcg@10"]
    assert test["recall@10"] > popular["recall@10"] + 0.15
    assert run["evaluation"].baselines == {"popularity": popular}
    assert [h["epoch"] for h in run["fitted"].history] == [1, 2, 3]
    assert all("valid_ndcg@10" in h for h in run["fitted"].history)


def test_export_is_top_k_in_the_graph_with_indices_parity(run):
    exported = run["exported"]
    parity = exported.parity
    assert parity["passed"], parity
    assert parity["outputs"]["items"]["kind"] == "indices"
    assert parity["outputs"]["scores"]["kind"] == "float"
    assert parity["rows"] >= 100
    assert exported.signature["outputs"] == ["items", "scores"]
    assert exported.signature["inputs"] == {"history": {"dtype": "int64", "shape": [-1, 20]},
                                            "mask": {"dtype": "float32", "shape": [-1, 20]}}
    session = ort.InferenceSession(str(run["version"].path / "model.onnx"), providers=["CPUExecutionProvider"])
    outs = session.get_outputs()
    assert [o.name for o in outs] == ["items", "scores"]
    assert outs[0].type == "tensor(int64)" and outs[0].shape[1] == 10  # TopK inside the graph


def test_registration_stores_the_catalogue_and_profiles_list_outputs(run):
    from verticals import artifacts
    from verticals.store import ModelStore

    version = ModelStore(run["home"]).load(NAME, run["version"].version)  # sha256 of every file
    manifest = version.manifest
    assert manifest["task"] == "ranking"
    entry = manifest["named_artifacts"]["catalogue"]
    assert entry["kind"] == "parquet" and entry["file"] in manifest["artifacts"]
    catalogue = artifacts.load(version.path, manifest["named_artifacts"])["catalogue"]
    assert catalogue.get_column("item").to_list() == manifest["preprocessor"]["items"]
    assert catalogue.get_column("item").to_list() == sorted(catalogue.get_column("item").to_list())
    reference = manifest["reference"]
    assert reference["score"] is None  # a list score column gets no scalar profile
    items = reference["outputs"]["items"]
    assert items["kind"] == "list" and items["mean_length"] == 10
    assert 10 <= items["distinct"] <= catalogue.height
    assert 0 < items["top_share"] <= 1 and abs(sum(items["proportions"]) + items["other"] - 1) < 1e-9
    assert "scores" in reference["outputs"]
    assert manifest["training_data"]["no_example"]["train"] == {
        "first interaction of a user (no earlier item to learn from)":
            run["loaded"].frame.get_column("user").n_unique()}
    assert "Recommendations (test split)" in (version.path / "report.html").read_text()


def _recommend(run, frame: pl.DataFrame) -> tuple[pl.DataFrame, object]:
    """Recommendations for every user of ``frame`` through the registered ONNX file, as scoring makes them."""
    from verticals import artifacts
    from verticals.store import ModelStore

    version = ModelStore(run["home"]).load(NAME, run["version"].version)
    pre = RankingPreprocessor()
    pre.load_state(version.manifest["preprocessor"])
    batch = pre.transform(frame, with_target=False)
    session = ort.InferenceSession(str(version.path / "model.onnx"), providers=["CPUExecutionProvider"])
    items, scores = session.run(None, batch.inputs)
    context = ScoringContext(version.manifest["extras"], artifacts.load(version.path, version.manifest["named_artifacts"]))
    out = RankingPipeline().postprocess({"items": items, "scores": scores}, batch, context)
    return pl.concat([batch.ids, out], how="horizontal"), batch


def test_recommendations_through_onnx_runtime_never_contain_seen_items(run):
    frame = run["loaded"].frame
    recs, _ = _recommend(run, frame)
    assert recs.height == frame.get_column("user").n_unique()
    assert recs.schema["items"] == pl.List(pl.String) and recs.schema["scores"] == pl.List(pl.Float64)
    assert recs.get_column("items").list.len().eq(10).all()
    assert recs.get_column("items").explode().str.starts_with("sku-").all()
    scores = np.array(recs.get_column("scores").to_list())
    assert np.isfinite(scores).all() and (np.diff(scores, axis=1) <= 0).all()  # best first
    # Against the raw event log: a user's last 20 interactions (the history the model sees) never
    # come back as a recommendation, and the ids are the catalogue's strings.
    history = (frame.sort("timestamp").group_by("user", maintain_order=True).agg(pl.col("item").tail(20))
               .rename({"item": "seen"}))
    joined = recs.join(history, on="user")
    overlap = joined.select(pl.col("items").list.set_intersection("seen").list.len().alias("n"))
    assert overlap.get_column("n").sum() == 0
    assert joined.height == recs.height


def test_recommendations_exclude_seen_items_even_when_the_model_prefers_them(run):
    """A user who has seen the catalogue's highest-scoring items still never gets them back."""
    catalogue = run["version"].manifest["preprocessor"]["items"]
    base = dt.datetime(2026, 6, 1)
    popular = RankingPreprocessor()
    popular.load_state(run["version"].manifest["preprocessor"])
    # The 20 most popular items: what an unmasked model would rank first for most users.
    favourites = [catalogue[i] for i in popular._popular[:20]]
    frame = pl.DataFrame({"user": ["fan"] * 20, "timestamp": [base + dt.timedelta(minutes=m) for m in range(20)],
                          "item": favourites})
    recs, _ = _recommend(run, frame)
    assert not set(recs.get_column("items").item()) & set(favourites)
    # Repeated items and model index 0 (which padded history slots also hold) are masked all the same.
    repeat = [catalogue[0], catalogue[0], catalogue[int(popular._popular[0])]]
    again = pl.DataFrame({"user": ["repeat"] * 3, "timestamp": [base + dt.timedelta(minutes=m) for m in range(3)],
                          "item": repeat})
    recs, batch = _recommend(run, again)
    assert batch.inputs["mask"].sum() == 3 and batch.inputs["history"][0, :17].tolist() == [0] * 17
    assert not set(recs.get_column("items").item()) & set(repeat)


def test_postprocess_refuses_a_version_without_its_catalogue():
    from verticals.errors import ModelIntegrityError

    outputs = {"items": np.array([[0, 1]]), "scores": np.array([[2.0, 1.0]], dtype=np.float32)}
    with pytest.raises(ModelIntegrityError, match="no 'catalogue' artifact"):
        RankingPipeline().postprocess(outputs, None, ScoringContext({"catalogue_items": 5}, {}))
    with pytest.raises(ModelIntegrityError, match="catalogue has 1 items"):
        RankingPipeline().postprocess(outputs, None, ScoringContext(
            {"catalogue_items": 1}, {"catalogue": pl.DataFrame({"item": ["x"]})}))


# -- scoring (grouping-aware, through verticals.scoring.score) --------------------------------------------
def _score(run, frame: pl.DataFrame, folder, name: str, *, row_group: int | None = None, **options):
    from verticals.scoring import score

    src = folder / f"{name}.parquet"
    frame.write_parquet(src, row_group_size=row_group or max(1, frame.height))
    out = folder / f"{name}-out"
    with use_plugins({"ranking": RankingPlugin(users=400)}):
        manifest = score(NAME, src, out, home=run["home"], progress=False, device="cpu", **options)
    parts = pl.concat([pl.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))])
    return parts.sort("user"), manifest, out


def _event_log(run) -> pl.DataFrame:
    """Fresh users' interactions (an event log sorted by time, users interleaved), with a row whose item
    is missing (rejected by validation) and a user who only saw items the model does not know."""
    frame = make_interactions(150, start=10_000)
    broken = frame.head(1).with_columns(pl.lit(None, dtype=pl.String).alias("item"))
    strangers = pl.DataFrame({"user": ["stranger", "stranger"],
                              "timestamp": [dt.datetime(2026, 2, 1), dt.datetime(2026, 2, 2)],
                              "item": ["never-seen-1", "never-seen-2"]}).cast(frame.schema)
    return pl.concat([frame, broken, strangers]).sort("timestamp", maintain_order=True)


def test_event_log_is_scored_per_whole_user_the_same_in_one_or_many_row_groups(run, tmp_path):
    frame = _event_log(run)
    users = frame.filter(pl.col("item").is_not_null()).get_column("user").n_unique()
    one, m1, _ = _score(run, frame, tmp_path, "one")
    many, m50, out = _score(run, frame, tmp_path, "many", row_group=7)  # ~100 row groups, users cut across them
    assert many.drop("model_version").equals(one.drop("model_version"))
    for m in (m1, m50):
        assert m["rows_in"] == frame.height == m["rows_scored"] + m["rows_rejected"]
        assert m["rows_rejected"] == 1
        assert m["rows_out"] == users == one.height  # one recommendation list per user
        assert m["rows_no_output"] == 0
    assert one.get_column("user").is_unique().all()
    rejects = pl.read_parquet(out / "_rejects.parquet")
    assert rejects.height == 1 and "item" in rejects.get_column("_reason").item()
    assert one.schema["items"] == pl.List(pl.String) and one.get_column("items").list.len().eq(10).all()
    assert one.filter(pl.col("flags") == "history:empty").get_column("user").to_list() == ["stranger"]
    # What the scoring path recommends is what the exported graph gives on each user's whole history.
    direct, _ = _recommend(run, frame.filter(pl.col("item").is_not_null()))
    assert direct.sort("user").select("user", "items").equals(one.select("user", "items"))
    # ... and never an item the user has seen (their last 20, the history the model reads).
    seen = (frame.drop_nulls().sort("timestamp").group_by("user").agg(pl.col("item").tail(20).alias("seen")))
    overlap = one.join(seen, on="user").select(pl.col("items").list.set_intersection("seen").list.len().sum())
    assert overlap.item() == 0


def test_scoring_output_has_string_ids_and_the_declared_columns(run, tmp_path):
    frame = make_interactions(40, start=20_000)
    table, manifest, _ = _score(run, frame, tmp_path, "cols")
    assert table.columns == ["user", "items", "scores", "flags", "model_version"]
    assert table.schema["user"] == pl.String
    catalogue = set(run["version"].manifest["preprocessor"]["items"])
    assert set(table.get_column("items").explode().to_list()) <= catalogue
    assert manifest["rows_out"] == 40


@pytest.mark.xfail(strict=True, reason="core gap: a group longer than a scoring batch is cut into pieces and a "
                   "per-group preprocessor cannot tell a piece that ends its group from one that does not, so "
                   "a long user gets one output row per piece")
def test_a_user_longer_than_a_batch_still_gets_one_recommendation_list(run, tmp_path):
    frame = make_interactions(30, start=30_000)
    whole, _, _ = _score(run, frame, tmp_path, "whole")
    cut, _, _ = _score(run, frame, tmp_path, "cut", batch_size=6)  # users have 5-14 interactions
    assert cut.height == whole.height == 30


def test_verticals_score_reports_one_output_row_per_user(run, tmp_path, monkeypatch, capsys):
    from verticals.cli import main

    frame = make_interactions(25, start=40_000)
    frame.write_parquet(tmp_path / "log.parquet", row_group_size=17)
    monkeypatch.setenv("VERTICALS_HOME", str(run["home"]))
    with use_plugins({"ranking": RankingPlugin(users=400)}):
        main(["score", NAME, "--input", str(tmp_path / "log.parquet"), "--output", str(tmp_path / "out"),
              "--device", "cpu", "--no-progress"])
    printed = capsys.readouterr().out
    assert f"{frame.height:,} scored, 0 rejected" in printed
    assert f"25 output rows (examples) from the {frame.height:,} scored rows" in printed
    table = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / "out").glob("part-*.parquet"))])
    assert table.height == 25 and table.get_column("user").is_unique().all()
