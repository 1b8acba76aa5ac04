"""Scoring the windows reference pipeline: grouped input, row groups, machines too short for a window."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from verticals.testing import use_plugins
from verticals.testing.windows import WindowsPlugin

W = 16
NAME = "win.failure_windows"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small model for the module's tests (the registry stays active for scoring)."""
    from verticals import engine

    home = tmp_path_factory.mktemp("verticals-home")
    plugin = WindowsPlugin(machines=9, readings=120, window=W)
    with use_plugins({"win": plugin}):
        result = engine.train(NAME, epochs=1, seed=0, home=home, progress=False, variants=())
        yield home, plugin, result.version


def _score(home: Path, source: Path, out: Path, **options) -> tuple[pl.DataFrame, dict]:
    from verticals.scoring import score

    manifest = score(NAME, source, out, device="cpu", home=home, progress=False, **options)
    parts = sorted(out.glob("part-*.parquet"))
    table = pl.concat([pl.read_parquet(p) for p in parts], how="vertical_relaxed")
    assert json.loads((out / "_manifest.json").read_text())["rows_in"] == manifest["rows_in"]
    return table.sort(["machine", "time"]), manifest


def _readings(plugin: WindowsPlugin) -> pl.DataFrame:
    return plugin.telemetry().frame.drop("failure")


def _expected(frame: pl.DataFrame) -> tuple[int, int, str]:
    """(windows, readings without a window, the late machine) of a frame of whole machines."""
    sizes = frame.group_by("machine").len()
    late = sizes.filter(pl.col("len") < W)
    assert late.height == 1
    without = (W - 1) * (sizes.height - 1) + late.get_column("len").item()
    return frame.height - without, without, late.get_column("machine").item()


def test_scoring_makes_one_row_per_window_and_accounts_for_every_reading(trained, tmp_path):
    home, plugin, _ = trained
    frame = _readings(plugin)  # an event log: sorted by time, machines interleaved
    source = tmp_path / "log.parquet"
    frame.write_parquet(source)
    table, manifest = _score(home, source, tmp_path / "out")
    windows, without, late = _expected(frame)
    assert manifest["rows_in"] == frame.height == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] == 0 and manifest["rows_out"] == windows == table.height
    # Readings without a window are counted with the reason, the late machine's included.
    assert manifest["rows_no_output"] == without
    assert manifest["no_output_reasons"] == {"fewer than 16 readings of the machine (window)": without}
    assert manifest["rows_out"] + manifest["rows_no_output"] == manifest["rows_scored"]
    # One output per (machine, time) of a window's last reading; the late machine has none.
    assert table.select(pl.struct("machine", "time").n_unique()).item() == table.height
    assert late not in set(table.get_column("machine"))
    assert {"score", "alert", "model_version"} <= set(table.columns)
    assert table.get_column("score").is_between(0, 1).all()
    assert table.schema["time"] == pl.Datetime("us")
    # Grouped input (sorted by machine) scores exactly as the interleaved log.
    grouped = tmp_path / "grouped.parquet"
    frame.sort(["machine", "time"]).write_parquet(grouped)
    again, _ = _score(home, grouped, tmp_path / "out-grouped")
    assert again.equals(table)


@pytest.mark.parametrize(("order", "batch_size"), [("grouped", None), ("interleaved", None), ("interleaved", 37)])
def test_windows_spanning_row_groups_score_exactly_as_in_one_piece(trained, tmp_path, order, batch_size):
    """50 row groups, machines grouped or interleaved (sorted by time only), and batches smaller than a
    machine (each piece carries its window's earlier readings as context) score as one piece does."""
    home, plugin, _ = trained
    frame = _readings(plugin)
    if order == "grouped":
        frame = frame.sort(["machine", "time"])
    one, fifty = tmp_path / "one.parquet", tmp_path / "fifty.parquet"
    pq.write_table(frame.to_arrow(), one, row_group_size=frame.height)
    pq.write_table(frame.to_arrow(), fifty, row_group_size=math.ceil(frame.height / 50))
    assert pq.ParquetFile(fifty).metadata.num_row_groups == 50
    whole, first = _score(home, one, tmp_path / "out-one")
    options = {} if batch_size is None else {"batch_size": batch_size}
    pieces, second = _score(home, fifty, tmp_path / "out-fifty", **options)
    for key in ("rows_in", "rows_scored", "rows_rejected", "rows_out", "rows_no_output", "no_output_reasons"):
        assert second[key] == first[key], key
    assert first["rows_out"] == _expected(frame)[0]
    assert pieces.equals(whole)


def test_a_duplicate_reading_is_rejected_with_its_reason_and_the_rest_scores(trained, tmp_path):
    home, plugin, _ = trained
    frame = _readings(plugin)
    duplicate = frame.filter(pl.col("machine") == "m03").slice(40, 1).with_columns(pl.col("vibration") + 1)
    source = tmp_path / "dup.parquet"
    pl.concat([frame, duplicate]).write_parquet(source)
    table, manifest = _score(home, source, tmp_path / "out")
    assert manifest["rows_in"] == frame.height + 1 == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] == 1 and manifest["rows_out"] == _expected(frame)[0]
    rejects = pl.read_parquet(tmp_path / "out" / "_rejects.parquet")
    assert rejects.height == 1
    assert rejects.get_column("_reason").item().startswith("duplicate reading: machine 'm03' already has a reading")
    assert rejects.get_column("_row").item() == frame.height  # its row in the input file
    # The first reading at that time is the one in the windows: its id is scored once.
    at = duplicate.select("machine", "time")
    assert table.join(at, on=["machine", "time"]).height == 1


def test_an_input_of_machines_too_short_for_a_window_scores_no_row_and_says_why(trained, tmp_path):
    home, plugin, _ = trained
    frame = _readings(plugin)
    _, _, late = _expected(frame)
    short = frame.filter(pl.col("machine") == late)
    source = tmp_path / "short.parquet"
    short.write_parquet(source)
    table, manifest = _score(home, source, tmp_path / "out")
    assert manifest["rows_in"] == manifest["rows_scored"] == short.height and manifest["rows_out"] == 0
    assert manifest["no_output_reasons"] == {"fewer than 16 readings of the machine (window)": short.height}
    # The (empty) output still has the columns of any other: the examples' machine and time first.
    assert table.height == 0
    assert table.columns[:2] == ["machine", "time"] and table.schema["time"] == pl.Datetime("us")
