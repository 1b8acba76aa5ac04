"""A user's own files through the manufacturing templates: a file in the AI4I 2020 layout registered with
no editing, and a fleet's telemetry with its own column names, datetime timestamps and text labels."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import verticals_manufacturing.plugin as plugin
from verticals.owndata import OwnDataError, register_config
from verticals.testing import use_plugins
from verticals_manufacturing.ai4i import generate_ai4i
from verticals_manufacturing.fleet import generate_fleet
from verticals_manufacturing.layout import FLEET_LAYOUT, TelemetryLayout, parse_duration
from verticals_manufacturing.risk import horizon_labels

MILL = 'name = "my_mill"\ntemplate = "manufacturing.ai4i"\ndata = "ai4i2020.csv"\n'
START = datetime(2026, 3, 1, 6, 0)
STEP = timedelta(minutes=10)
TELEMETRY = """name = "press_line"
template = "manufacturing.telemetry"
data = "telemetry.csv"
[target]
column = "failed"
positive = "yes"
negative = "no"
[features]
numeric = ["air_temperature", "process_temperature", "rotational_speed", "torque", "tool_wear", "vibration"]
[telemetry]
machine = "asset"
time = "timestamp"
mode = "cause"
horizon = "100m"
window = 12
kelvin = ["air_temperature", "process_temperature"]
speed = "rotational_speed"
torque = "torque"
wear = "tool_wear"
[costs]
miss = 2000
false_alarm = 100
"""


def _own_telemetry(machines: int = 30, seed: int = 0) -> pl.DataFrame:
    """The generated fleet as a plant historian exports it: datetimes every 10 minutes, its own column
    names, failures as yes/no."""
    return generate_fleet(machines, seed).with_columns(
        (pl.lit(START) + pl.duration(minutes=pl.col("cycle") * 10)).alias("timestamp"),
        pl.when(pl.col("failure") > 0).then(pl.lit("yes")).otherwise(pl.lit("no")).alias("failed"),
    ).rename({"machine_id": "asset", "failure_mode": "cause"}).drop("cycle", "failure")


OWN_LAYOUT = TelemetryLayout(machine="asset", time="timestamp", failure="failed", mode="cause", datetime=True,
                             positive="yes")


def test_horizon_labels_in_time_units_match_the_cycle_labels():
    cycles = generate_fleet(12, seed=3)
    own = _own_telemetry(12, seed=3)
    by_cycle = horizon_labels(cycles, 10).sort("machine_id", "cycle")
    by_time = horizon_labels(own, 600 * 10.0, layout=OWN_LAYOUT).sort("asset", "timestamp")
    assert by_cycle["_failure_within_h"].to_list() == by_time["_failure_within_h"].to_list()
    assert by_cycle["_mode_bits"].to_list() == by_time["_mode_bits"].to_list()
    seconds = (START.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds()
    expected = [None if c is None else seconds + 600.0 * c for c in by_cycle["_next_failure"].to_list()]
    assert by_time["_next_failure"].to_list() == expected


def test_durations_are_cycles_or_time_units():
    assert parse_duration(10, datetime=False) == 10
    assert parse_duration("90m", datetime=True) == 5400 and parse_duration("2d", datetime=True) == 172_800
    for value, is_datetime in ((2.5, False), ("2h", False), ("soon", True), (0, True), (True, False)):
        with pytest.raises(ValueError):
            parse_duration(value, datetime=is_datetime)
    assert FLEET_LAYOUT.describe(10) == "10 cycles" and OWN_LAYOUT.describe(7200) == "2 h"


@pytest.fixture
def plant(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTICALS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VERTICALS_DATA_CONFIG", raising=False)
    with use_plugins({"manufacturing": plugin}):
        yield tmp_path


def _write(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder / name


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: f.drop("Tool wear [min]"), "names column 'Tool wear [min]', which data file"),
    (lambda f: f.head(200), "has 200 rows; template manufacturing.ai4i needs at least 500"),
    (lambda f: f.with_columns(pl.lit(2).alias("Machine failure")), "has label(s) '2'"),
])
def test_ai4i_file_problems_are_named_at_registration(plant, edit, message):
    edit(generate_ai4i(1000, seed=1)).write_csv(plant / "ai4i2020.csv")
    with pytest.raises(OwnDataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        register_config(_write(plant, "mill.toml", MILL))


@pytest.mark.parametrize(("extra", "message"), [
    ('[features]\nnumeric = ["Torque [Nm]"]\n', "reads the AI4I 2020 layout"),
    ("[costs]\nmiss = -5\n", "costs.miss = -5 is not a positive number"),
    ('[split]\nstrategy = "random"\n', "split must be time or stratified"),
])
def test_ai4i_config_mistakes(plant, extra, message):
    generate_ai4i(1000, seed=1).write_csv(plant / "ai4i2020.csv")
    with pytest.raises(OwnDataError, match=message):
        register_config(_write(plant, "mill.toml", MILL + extra))


@pytest.mark.parametrize(("old", "new", "message"), [
    ('horizon = "100m"\n', "", "needs 'horizon'"),
    ('speed = "rotational_speed"', 'speed = "spindle"', "telemetry.speed = 'spindle' is not one of the sensors"),
    ('time = "timestamp"', 'time = "ts"', "telemetry.time names column 'ts'"),
    ("[costs]", '[split]\ngap = 60\n[costs]', "split.gap = 60 is shorter than the horizon \\(100 min\\)"),
    ('mode = "cause"', 'mode = "torque"', "have two roles"),
])
def test_telemetry_config_mistakes(plant, old, new, message):
    _own_telemetry(12).write_csv(plant / "telemetry.csv")
    assert old in TELEMETRY
    with pytest.raises(OwnDataError, match=message):
        register_config(_write(plant, "press.toml", TELEMETRY.replace(old, new)))


@pytest.mark.parametrize(("fmt", "horizon", "message", "fix"), [
    ("csv", "10", r"telemetry.horizon = 10 is a number of cycles, but time column 'timestamp' holds datetimes "
                  r"\(e.g. '2026-03-01", 'horizon = "10m"'),
    ("parquet", '"10"', r"telemetry.horizon = '10' is a number of cycles, but time column 'timestamp' holds "
                        r"datetimes", 'horizon = "10m"'),
    ("cycles-csv", '"2h"', r"telemetry.horizon = '2h' is a duration, but time column 'timestamp' counts cycles "
                           r"\(whole numbers, e.g. 0\)", "horizon = 10"),
    ("cycles-parquet", '"2h"', r"telemetry.horizon = '2h' is a duration, but time column 'timestamp' counts "
                               r"cycles", "horizon = 10"),
])
def test_a_horizon_in_the_wrong_unit_for_the_time_column_is_refused_at_registration(plant, fmt, horizon, message,
                                                                                    fix):
    frame = _own_telemetry(12)
    if fmt.startswith("cycles"):
        frame = frame.with_columns(((pl.col("timestamp") - START).dt.total_minutes() // 10).alias("timestamp"))
    suffix = "parquet" if fmt.endswith("parquet") else "csv"
    getattr(frame, f"write_{suffix}")(plant / f"telemetry.{suffix}")
    text = TELEMETRY.replace('horizon = "100m"', f"horizon = {horizon}").replace("telemetry.csv", f"telemetry.{suffix}")
    with pytest.raises(OwnDataError, match=message) as info:
        register_config(_write(plant, "press.toml", text))
    assert fix in info.value.hint and "\n" not in str(info.value)
    assert not (plant / "home" / "data" / "index.json").exists()  # nothing stored


@pytest.mark.parametrize(("horizon", "gap"), [("10", "20"), ('"100m"', "7200")])
def test_a_horizon_in_the_time_column_unit_registers(plant, horizon, gap):
    frame = _own_telemetry(12)
    if not horizon.startswith('"'):
        frame = frame.with_columns(((pl.col("timestamp") - START).dt.total_minutes() // 10).alias("timestamp"))
    frame.write_csv(plant / "telemetry.csv")
    text = TELEMETRY.replace('horizon = "100m"', f"horizon = {horizon}").replace("[costs]", f"[split]\ngap = {gap}\n[costs]")
    config, _ = register_config(_write(plant, "press.toml", text))
    assert config.options["layout"].datetime == horizon.startswith('"')
    assert config.split.gap == (20 if horizon == "10" else 7200.0)


def test_a_gap_of_part_of_a_cycle_is_refused(plant):
    frame = _own_telemetry(12).with_columns(
        ((pl.col("timestamp") - START).dt.total_minutes() // 10).alias("timestamp"))
    frame.write_csv(plant / "telemetry.csv")
    text = TELEMETRY.replace('horizon = "100m"', "horizon = 10").replace("[costs]", "[split]\ngap = 12.5\n[costs]")
    with pytest.raises(OwnDataError, match=r"split\.gap: 12\.5 is not a whole number of cycles"):
        register_config(_write(plant, "press.toml", text))


@pytest.mark.slow
def test_released_layout_registers_unedited_and_trains(plant):
    from verticals.engine import train

    generate_ai4i(1500, seed=2).write_csv(plant / "ai4i2020.csv")
    config, summary = register_config(_write(plant, "mill.toml", MILL))
    assert summary["rows"] == 1500 and config.split.strategy == "time"
    with use_plugins({"manufacturing": plugin}):
        result = train("manufacturing.my_mill", epochs=2, progress=False, variants=())
    metrics = json.loads((result.path / "metrics.json").read_text())
    assert 0 <= metrics["test"]["pr_auc"] <= 1 and "hist_gradient_boosting" in metrics["baselines"]
    assert result.manifest["extras"]["threshold"] > 0


@pytest.mark.slow
def test_own_telemetry_with_datetimes_trains_and_scores(plant):
    from verticals.engine import train
    from verticals.scoring import score
    from verticals_manufacturing.latest import latest_by_machine

    frame = _own_telemetry()
    frame.write_csv(plant / "telemetry.csv")
    config, _ = register_config(_write(plant, "press.toml", TELEMETRY))
    assert config.split.strategy == "group_time" and config.split.gap == 6000.0  # seconds: the horizon
    with use_plugins({"manufacturing": plugin}):
        result = train("manufacturing.press_line", epochs=1, progress=False, variants=())
        extras = result.manifest["extras"]
        assert extras["horizon"] == 6000.0 and extras["time_unit"] == "seconds" and extras["window"] == 12
        assert extras["costs"] == {"miss": 2000.0, "false_alarm": 100.0}
        test = result.metrics["test"]
        assert test["failures"] > 0 and (np.isnan(test["lead_time_mean"]) or 0 < test["lead_time_mean"] <= 6000)
        html = (result.path / "report.html").read_text()
        assert "horizon of 100 min" in html and "sensor traces before failures" in html
        assert "The goal over seeds" not in html  # measured on the built-in fleet: says nothing of this data
        assert "<b>Fleet size:</b> this run trained on" in html  # the user's fleet, in its own machine column
        new = frame.filter(pl.col("asset").is_in(["M0001", "M0002"])).drop("failed", "cause")
        new.write_parquet(plant / "new.parquet")
        manifest = score("manufacturing.press_line", plant / "new.parquet", plant / "out", progress=False)
    assert manifest["rows_out"] == new.height - 2 * 11
    out = pl.read_parquet(sorted((plant / "out").glob("part-*.parquet")))
    assert out.schema["timestamp"] == pl.Datetime("us") and set(out["asset"]) == {"M0001", "M0002"}
    latest, unscored = latest_by_machine(plant / "out")
    assert latest.columns[:2] == ["asset", "timestamp"] and latest.height == 2 and unscored == []
    last = new.group_by("asset").agg(pl.col("timestamp").max()).sort("asset")
    assert latest.select("asset", "timestamp").sort("asset").equals(last)
