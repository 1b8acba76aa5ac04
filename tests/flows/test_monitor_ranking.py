"""The monitor flow on a pipeline whose outputs are lists (top-k items): no scalar score to profile,
so recommended items are compared by their shares, with coverage next to the training figures."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

NAME = "ranking.next_item"


def test_list_outputs_are_monitored_and_a_shifted_population_is_marked_drifted(prefect_api, flows_env,
                                                                                 tmp_path: Path) -> None:
    from verticals import engine
    from verticals.scoring import score
    from verticals.testing import use_plugins
    from verticals.testing.ranking import RankingPlugin, make_interactions
    from verticals_flows.monitor import monitor_flow

    with use_plugins({"ranking": RankingPlugin(users=300)}):
        version = engine.train(NAME, epochs=2, progress=False, variants=()).version
        stable = make_interactions(300, start=50_000, planted=True)  # new users, same catalogue
        # One cluster's users only: their recommendations crowd into that cluster's items.
        shifted = stable.filter(pl.col("user_cluster") == 0)
        for name, frame in (("stable", stable), ("shifted", shifted)):
            frame.drop("user_cluster", "item_cluster").write_parquet(tmp_path / f"{name}.parquet")
            score(NAME, tmp_path / f"{name}.parquet", tmp_path / f"{name}-scores", model=str(version),
                  progress=False, device="cpu")

        calm = monitor_flow(pipeline=NAME, scores=str(tmp_path / "stable-scores"), return_state=True)
        assert calm.is_completed(), calm.message
        rows = {r["feature"]: r for r in calm.result()["rows"]}
        assert "score" not in rows  # a list score column has no scalar profile
        items = rows["items"]
        assert items["kind"] == "list" and items["status"] == "stable"
        assert items["distinct"] > 10 and items["psi"] < 0.1
        assert items["reference_distinct"] >= 10 and 0 < items["top_share"] <= 1

        moved = monitor_flow(pipeline=NAME, scores=str(tmp_path / "shifted-scores"), fail_on_drift=False,
                             return_state=True)
        assert moved.name == "Drifted"
        table = {r["feature"]: r for r in moved.result()["rows"]}
        assert table["items"]["status"] == "significant"
        assert table["items"]["distinct"] < table["items"]["reference_distinct"]
