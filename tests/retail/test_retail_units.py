"""The retail pieces on hand-made data: histories and the seen mask, baselines, metrics, data, scoring
parameters (no training here)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from verticals import Pipeline
from verticals.errors import PluginError, UserError
from verticals.scoring.session import scoring_params
from verticals.spec import CONTEXT, ScoringParameter
from verticals_retail.baselines import (
    ease_weights,
    interaction_matrix,
    item_knn_weights,
    ranking_metrics,
    top_items,
)
from verticals_retail.data import min_rating
from verticals_retail.preprocess import FIRST, REPEAT, UNKNOWN_TARGET, HistoryPreprocessor


def _log(rows):
    t0 = dt.datetime(2026, 1, 1)
    return pl.DataFrame({"user": [r[0] for r in rows], "timestamp": [t0 + dt.timedelta(hours=r[1]) for r in rows],
                         "item": [r[2] for r in rows]})


def _fitted(max_history=3):
    pre = HistoryPreprocessor(max_history=max_history, top_k=5)
    pre.fit(_log([("a", 1, "x"), ("a", 2, "y"), ("a", 3, "z"), ("b", 1, "y"), ("b", 2, "w"), ("c", 1, "v")]))
    return pre


def test_fit_builds_a_sorted_catalogue_with_popularity_and_known_histories():
    pre = _fitted()
    assert pre.items == ["v", "w", "x", "y", "z"] and pre.counts == [1, 1, 1, 2, 1]
    assert pre.known == {"a": [2, 3, 4], "b": [3, 1], "c": [0]}
    again = HistoryPreprocessor()
    again.load_state(pre.state())
    assert again.items == pre.items and again.known == pre.known and again.max_history == 3
    assert pre.history("b") == [3, 1] and pre.history("nobody") is None
    # a model registered before the histories moved out of the manifest (state format 1) still loads
    legacy = {**pre.state(), "format": 1, "known": {"a": [2, 3, 4], "b": [3, 1], "c": [0]}}
    old = HistoryPreprocessor()
    old.load_state(legacy)
    assert old.known == pre.known


def test_remember_appends_new_catalogue_items_after_the_known_ones_each_once():
    pre = _fitted()
    pre.remember(_log([("b", 5, "x"), ("b", 3, "y"), ("d", 1, "ghost"), ("d", 2, "z"), ("a", 9, "x"), ("e", 1, "ghost")]))
    assert pre.known == {"a": [2, 3, 4], "b": [3, 1, 2], "c": [0], "d": [4]}


def test_training_examples_history_window_and_exact_seen_mask():
    pre = _fitted(max_history=2)
    frame = _log([("a", 4, "x"), ("a", 1, "v"), ("a", 2, "w"), ("a", 3, "y"), ("a", 5, "ghost"), ("a", 6, "w"),
                  ("a", 7, "z")])
    batch = pre.transform(frame, with_target=True)
    # examples: w (after v), y, x, z; the first row has no history, ghost is unknown, the second w repeats
    assert [pre.items[t] for t in batch.target] == ["w", "y", "x", "z"]
    assert batch.skipped == {FIRST: 1, UNKNOWN_TARGET: 1, REPEAT: 1}
    last = batch.inputs
    # z's history: last two known items before it are y then x (oldest first); seen holds all four
    assert [pre.items[i] for i in last["history"][3]] == ["y", "x"] and last["mask"][3].tolist() == [1, 1]
    assert [pre.items[i] for i in np.flatnonzero(last["seen"][3])] == ["v", "w", "x", "y"]
    assert last["mask"][0].tolist() == [0, 1]  # left-padded
    assert batch.inputs["seen"].dtype == np.float32 and batch.inputs["history"].dtype == np.int64


def test_context_rows_are_history_never_examples():
    pre = _fitted()
    frame = _log([("a", 1, "v"), ("a", 2, "w"), ("a", 3, "x")]).with_columns(
        pl.Series(CONTEXT, [True, True, False]))
    batch = pre.transform(frame, with_target=True)
    assert [pre.items[t] for t in batch.target] == ["x"]
    assert np.flatnonzero(batch.inputs["seen"][0]).tolist() == [0, 1]


def test_scoring_flags_and_missing_user_column():
    pre = _fitted()
    batch = pre.transform(_log([("n", 1, "nope"), ("d", 1, "x"), ("d", 2, "x"), ("d", 3, "ghost")]),
                          with_target=False)
    flags = dict(zip(batch.ids["user"].to_list(), batch.flags.to_list(), strict=True))
    assert flags == {"d": "unknown_items:1,duplicates:1", "n": "history:empty,unknown_items:1"}
    with pytest.raises(PluginError, match="lacks the user column 'user'"):
        pre.transform(_log([("a", 1, "x")]).drop("user"), with_target=False)
    with pytest.raises(PluginError, match="before fit"):
        HistoryPreprocessor().transform(_log([("a", 1, "x")]), with_target=False)


def test_baselines_match_their_definitions():
    x = interaction_matrix([[0, 1], [0, 1, 2], [2, 3], [3]], 4)
    assert x.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]]
    knn = item_knn_weights(x, neighbours=1)
    assert (np.count_nonzero(knn, axis=1) <= 1).all() and knn[0, 1] == pytest.approx(1.0)
    full = item_knn_weights(x, neighbours=100)
    assert full[0, 2] == pytest.approx(1 / np.sqrt(2 * 2)) and np.diag(full).tolist() == [0, 0, 0, 0]
    lam = 0.5
    b = ease_weights(x, lam)
    # EASE's closed form solves min ||X - XB||² + λ||B||² with diag(B) = 0: check the optimality condition
    # (XᵀX + λI)B - XᵀX is zero off the diagonal.
    g = x.T @ x
    residual = (g + lam * np.eye(4)) @ b - g
    off = residual[~np.eye(4, dtype=bool)]
    assert np.abs(off).max() < 1e-4 and np.diag(b).tolist() == [0, 0, 0, 0]


def test_top_items_excludes_seen_and_metrics_are_exact():
    seen = np.array([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
    top = top_items(np.array([9.0, 1.0, 3.0, 2.0]), seen, k=3)
    assert top.tolist() == [[2, 3, 1], [0, 2, 3]]
    m = ranking_metrics(top, np.array([3, 1]), np.array([4.0, 1.0, 3.0, 2.0]), k=2)
    assert m["recall@2"] == 0.5 and m["ndcg@2"] == pytest.approx(0.5 / np.log2(3))
    assert m["recall_curve"] == {"1": 0.0, "2": 0.5, "3": 0.5}  # item 1 is fourth for the second user
    assert m["coverage@2"] == 0.75


def test_min_rating_threshold_is_configurable_with_clear_errors(monkeypatch):
    assert min_rating() == 4.0
    monkeypatch.setenv("VERTICALS_RETAIL_MIN_RATING", "3.5")
    assert min_rating() == 3.5
    monkeypatch.setenv("VERTICALS_RETAIL_MIN_RATING", "high")
    with pytest.raises(PluginError, match="VERTICALS_RETAIL_MIN_RATING='high' is not a number"):
        min_rating()
    monkeypatch.setenv("VERTICALS_RETAIL_MIN_RATING", "9")
    with pytest.raises(PluginError, match="outside MovieLens ratings"):
        min_rating()


def test_movielens_ships_offline_as_positive_interactions():
    from verticals_retail.data import movielens_interactions, movielens_items

    log = movielens_interactions()
    assert log.height == 51_568 and log.get_column("user").n_unique() == 671
    assert log.schema == pl.Schema({"user": pl.String, "timestamp": pl.Datetime("us"), "item": pl.String})
    assert log.get_column("timestamp").is_sorted()
    assert movielens_interactions(threshold=0.5).height == 100_004
    items = movielens_items()
    assert items.get_column("item").is_unique().all() and items.filter(pl.col("item") == "1")["title"][0]


class _Ranked(Pipeline):
    name = "ranked"

    def scoring_parameters(self, extras):
        return (ScoringParameter("k", "items per list", 10, minimum=1, maximum=int(extras["n"]),
                                 maximum_reason=f"the catalogue has {extras['n']} items"),)


def test_scoring_parameters_are_declared_by_the_pipeline_and_checked_by_the_core():
    pipe = _Ranked()
    assert scoring_params(pipe, {"n": 50}, None) == {"k": 10}
    assert scoring_params(pipe, {"n": 50}, {"k": "7"}) == {"k": 7}
    with pytest.raises(UserError, match=r"k=0 of pipeline ranked is below its minimum 1"):
        scoring_params(pipe, {"n": 50}, {"k": 0})
    with pytest.raises(UserError, match=r"k=51 of pipeline ranked is larger than its maximum 50 \(the catalogue"):
        scoring_params(pipe, {"n": 50}, {"k": 51})
    with pytest.raises(UserError, match=r"k='2.5' of pipeline ranked is not an integer"):
        scoring_params(pipe, {"n": 50}, {"k": "2.5"})
    with pytest.raises(UserError, match="has no scoring parameter 'depth'") as info:
        scoring_params(pipe, {"n": 50}, {"depth": 1})
    assert "k (items per list)" in info.value.hint
    with pytest.raises(UserError, match="takes no scoring parameters"):
        scoring_params(Pipeline(), {}, {"k": 3})


def test_a_held_out_item_outside_the_catalogue_is_a_miss_not_a_dropped_user():
    pre = _fitted()
    frame = _log([("a", 1, "v"), ("a", 2, "w"), ("a", 3, "brand-new")])
    held_out = pre.transform(frame.with_columns(pl.Series(CONTEXT, [True, True, False])), with_target=True)
    assert held_out.target.tolist() == [-1] and not held_out.skipped
    training = pre.transform(frame, with_target=True)
    assert [pre.items[t] for t in training.target] == ["w"] and training.skipped[UNKNOWN_TARGET] == 1
    m = ranking_metrics(np.array([[0, 1], [2, 3]]), np.array([-1, 2]), np.ones(5), k=2)
    assert m["recall@2"] == 0.5
