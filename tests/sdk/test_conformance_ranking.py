"""The conformance kit takes the ranking reference pipeline (grouped examples, list outputs) end to end."""

from __future__ import annotations

from verticals.testing.conformance import check_pipeline
from verticals.testing.ranking import RankingPlugin


def test_ranking_pipeline_conforms(verticals_home, verticals_plugins):
    verticals_plugins({"ranking": RankingPlugin(users=200)})
    report = check_pipeline("ranking.next_item", epochs=1, sample_rows=300)
    # Whole users' interactions (about 300 rows) in, every one scored; the output holds one row per user.
    assert 250 < report.rows_in <= 300 and report.rows_in == report.rows_scored + report.rows_rejected
    assert report.parity["passed"] and report.parity["outputs"]["items"]["kind"] == "indices"
    assert {"manifest", "parity", "integrity", "row accounting", "output columns", "output rows",
            "deterministic scoring", "layout-independent scoring"} <= set(report.checks)
