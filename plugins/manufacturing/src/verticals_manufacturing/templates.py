"""Own-data templates: a user's file becomes a manufacturing pipeline (``verticals data register``).

* ``manufacturing.ai4i``: a file in the AI4I 2020 layout (the released UCI CSV, unedited, or a user's
  own in that layout) → a ``process_failure`` pipeline. The layout fixes the id, target and feature
  columns, so a config needs only ``name``, ``template`` and ``data``; registration checks the file's
  header against the layout.
* ``manufacturing.telemetry``: a fleet's own telemetry (machine id, timestamp, sensors, failure events,
  optional mode) → a ``failure_risk`` pipeline. The ``[telemetry]`` section names the columns, the
  window and the horizon; the time column is an integer cycle count (``horizon = 10``) or a datetime
  (``horizon = "2h"``).

Both accept ``[costs]`` (``miss``, ``false_alarm``): the alert threshold's costs. See
``docs/manufacturing.md`` for complete examples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from verticals.owndata import DataTemplate

from verticals_manufacturing.ai4i import MODES, SENSORS

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl
    from verticals.owndata import OwnDataConfig
    from verticals.spec import Column, DatasetSpec

__all__ = ["ai4i_template", "telemetry_template"]

#: The smallest files the templates train on, and the fewest failures.
MIN_PROCESS_ROWS, MIN_TELEMETRY_ROWS, MIN_FAILURES = 500, 500, 5

_COSTS_HELP = "miss and false_alarm: what a missed failure and a needless stop cost (sets the alert threshold)"
_TELEMETRY_KEYS = {"machine", "time", "mode", "modes", "window", "horizon", "kelvin", "speed", "torque", "wear"}
_TELEMETRY_EXAMPLE = ('[telemetry]\nmachine = "machine_id"\ntime = "timestamp"\nhorizon = "2h"      '
                      '# or a whole number of cycles when time counts cycles\nwindow = 24')


def _costs(config: OwnDataConfig) -> dict[str, float]:
    from verticals_manufacturing.evaluation import DEFAULT_FALSE_ALARM_COST, DEFAULT_MISS_COST

    raw = config.raw.get("costs") or {}
    if not isinstance(raw, dict) or set(raw) - {"miss", "false_alarm"}:
        raise config.fail(f"[costs] accepts miss and false_alarm, got {raw!r}",
                          "write [costs]\nmiss = 10000\nfalse_alarm = 500")
    out = {"miss_cost": DEFAULT_MISS_COST, "false_alarm_cost": DEFAULT_FALSE_ALARM_COST}
    for key, name in (("miss", "miss_cost"), ("false_alarm", "false_alarm_cost")):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise config.fail(f"costs.{key} = {value!r} is not a positive number", f"write e.g. {key} = 500")
            out[name] = float(value)
    return out


# -- manufacturing.ai4i ---------------------------------------------------------------------------------
_AI4I_DEFAULTS: Mapping[str, Any] = {
    "id": ["UDI", "Product ID"],
    "target": {"column": "Machine failure", "positive": "1", "negative": "0"},
    "features": {"numeric": list(SENSORS), "categorical": ["Type"]},
    "split": {"strategy": "time"},
}


def _ai4i_parse(config: OwnDataConfig) -> dict[str, Any]:
    layout = {"target": "Machine failure", "numeric": list(SENSORS), "categorical": ["Type"], "ids": ["UDI", "Product ID"]}
    given = {"target": config.target, "numeric": config.numeric, "categorical": config.categorical, "ids": config.ids}
    for key, expected in layout.items():
        if sorted(given[key] if isinstance(given[key], list) else [given[key]]) != sorted(
                expected if isinstance(expected, list) else [expected]):
            raise config.fail(
                f"template manufacturing.ai4i reads the AI4I 2020 layout, but the config sets {key} to "
                f"{given[key]!r} (the layout's: {expected!r})",
                "leave id, target and features out (the layout sets them), or use template "
                "manufacturing.telemetry for other columns")
    return {"costs": _costs(config)}


def _ai4i_schema(config: OwnDataConfig, columns: list[Column]) -> list[Column]:
    from verticals_manufacturing.process import ai4i_schema

    return list(ai4i_schema().columns)


def _ai4i_pipeline(config: OwnDataConfig, dataset: DatasetSpec) -> Any:
    from verticals_manufacturing.process import ProcessFailurePipeline

    return ProcessFailurePipeline(config.name, config.name, **config.options["costs"],
                                  description=config.description or f"machine failure per process on {config.name}")


def ai4i_template() -> DataTemplate:
    """``manufacturing.ai4i``: a file in the AI4I 2020 layout → a ``process_failure`` pipeline."""
    return DataTemplate(
        name="ai4i", pipeline=_ai4i_pipeline, parse=_ai4i_parse, adjust_schema=_ai4i_schema,
        sections={"costs": _COSTS_HELP}, defaults=_AI4I_DEFAULTS, splits=("time", "stratified"),
        min_rows=MIN_PROCESS_ROWS, min_per_class=MIN_FAILURES, example="docs/manufacturing.md",
        description="process rows in the AI4I 2020 layout (UDI, Product ID, Type, five process values, "
                    "Machine failure, mode flags): failure probability, mode, cost-based alert")


# -- manufacturing.telemetry ----------------------------------------------------------------------------
def _column(config: OwnDataConfig, section: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = section.get(key)
    if value is None:
        if required:
            raise config.fail(f"[telemetry] needs '{key}'", _TELEMETRY_EXAMPLE)
        return None
    if not isinstance(value, str) or not value:
        raise config.fail(f"telemetry.{key} must be a column name, got {value!r}", f'write e.g. {key} = "{key}"')
    return value


def _telemetry_parse(config: OwnDataConfig) -> dict[str, Any]:
    from verticals.spec import SplitSpec

    from verticals_manufacturing.layout import TelemetryLayout, parse_duration
    from verticals_manufacturing.risk import WINDOW

    section = config.raw.get("telemetry")
    if not isinstance(section, dict):
        raise config.fail("template manufacturing.telemetry needs a [telemetry] section", _TELEMETRY_EXAMPLE)
    unknown = sorted(set(section) - _TELEMETRY_KEYS)
    if unknown:
        raise config.fail(f"unknown key(s) {', '.join(unknown)} in [telemetry]",
                          f"use {', '.join(sorted(_TELEMETRY_KEYS))}")
    machine = _column(config, section, "machine", required=True)
    time = _column(config, section, "time", required=True)
    mode = _column(config, section, "mode", required=False)
    if config.categorical:
        raise config.fail(f"template manufacturing.telemetry takes numeric sensors only, got categorical "
                          f"{config.categorical}", "list the sensors under [features] numeric = [...]")
    horizon_raw = section.get("horizon")
    if horizon_raw is None:
        raise config.fail("[telemetry] needs 'horizon': how far ahead a failure is predicted",
                          'write horizon = 10 (cycles, when time counts cycles) or horizon = "2h" (datetimes)')
    is_datetime = isinstance(horizon_raw, str) and not horizon_raw.strip().isdigit()
    try:
        horizon = parse_duration(horizon_raw, datetime=is_datetime)
    except ValueError as exc:
        raise config.fail(f"telemetry.horizon: {exc}",
                          'write horizon = 10 (cycles) or horizon = "2h" (a datetime time column)') from None
    window = section.get("window", WINDOW)
    if isinstance(window, bool) or not isinstance(window, int) or not 2 <= window <= 10_000:
        raise config.fail(f"telemetry.window = {window!r} is not a whole number of readings of at least 2",
                          f"write e.g. window = {WINDOW}")
    roles = {}
    for key in ("speed", "torque", "wear"):
        name = _column(config, section, key, required=False)
        if name is not None and name not in config.numeric:
            raise config.fail(f"telemetry.{key} = '{name}' is not one of the sensors in [features] numeric",
                              f"add '{name}' to [features] numeric, or remove telemetry.{key}")
        roles[key] = name
    kelvin = section.get("kelvin", [])
    if isinstance(kelvin, str):
        kelvin = [kelvin]
    if not isinstance(kelvin, list) or any(k not in config.numeric for k in kelvin):
        raise config.fail(f"telemetry.kelvin = {kelvin!r} must list sensors of [features] numeric in kelvin",
                          'write e.g. kelvin = ["air_temperature"]')
    modes = section.get("modes", list(MODES))
    if (not isinstance(modes, list) or not 1 <= len(modes) <= 5 or not all(isinstance(m, str) and m for m in modes)
            or len(set(modes)) != len(modes)):
        raise config.fail(f"telemetry.modes = {modes!r}: list 1 to 5 distinct failure mode names",
                          'write e.g. modes = ["bearing", "overheat"]')
    used = [machine, time, mode, config.target]
    clash = sorted({c for c in used if c is not None and (c in config.numeric or used.count(c) > 1)})
    if clash:
        raise config.fail(f"column(s) {', '.join(clash)} have two roles in [telemetry], [target] and [features]",
                          "give the machine, time, mode, failure and each sensor its own column")
    config.references.update({machine: "telemetry.machine", time: "telemetry.time"})
    if mode is not None:
        config.references[mode] = "telemetry.mode"
    layout = TelemetryLayout(machine=machine, time=time, sensors=tuple(config.numeric), failure=config.target,
                             mode=mode, temperatures=tuple(kelvin), speed=roles["speed"], torque=roles["torque"],
                             wear=roles["wear"], datetime=is_datetime, positive=config.positive)
    split_raw = config.raw.get("split") or {}
    layout_unit = "seconds" if is_datetime else "whole cycles"
    try:
        gap = parse_duration(split_raw["gap"], datetime=is_datetime) if "gap" in split_raw else horizon
    except ValueError as exc:
        raise config.fail(f"split.gap: {exc}", f"remove gap (it defaults to the horizon) or give it in "
                          f"{layout_unit}") from None
    if gap < horizon:
        raise config.fail(f"split.gap = {gap:g} is shorter than the horizon ({layout.describe(horizon)}): "
                          "training labels would look into the validation and test periods",
                          f"remove gap (it defaults to the horizon) or set it to at least {horizon:g} ({layout.unit})")
    config.split = SplitSpec("group_time", test_fraction=config.split.test_fraction,
                             valid_fraction=config.split.valid_fraction, gap=gap)
    return {"layout": layout, "horizon": horizon, "window": int(window), "modes": list(modes),
            "costs": _costs(config), "horizon_raw": horizon_raw}


def _time_kind(values: pl.Series) -> tuple[str | None, str]:
    """Whether a time column holds ``"datetimes"`` or ``"cycles"`` (whole numbers), with an example
    value; ``None`` when it is neither (row validation names those rows)."""
    import polars as pl

    values = values.drop_nulls()
    if values.dtype == pl.String:
        values = values.str.strip_chars().filter(values.str.strip_chars() != "")
    if values.is_empty():
        return None, ""
    example = str(values[0])
    if values.dtype.is_temporal():
        return "datetimes", example
    if values.dtype.is_integer():
        return "cycles", example
    if values.dtype.is_float():
        return ("cycles" if bool((values == values.round(0)).all()) else None), example
    if values.dtype == pl.String:
        sample = values.head(1000)
        if bool(sample.str.contains(r"^[+-]?\d+$").all()):
            return "cycles", example
        if sample.str.to_datetime(strict=False, time_unit="us").null_count() == 0:
            return "datetimes", example
    return None, example


def _telemetry_check(config: OwnDataConfig, frame: pl.DataFrame) -> None:
    """The horizon's form against the time column: a bare number (cycles) for datetimes, or a duration
    such as ``"2h"`` for integer cycles, would fail every row at validation; refuse it here."""
    layout = config.options["layout"]
    kind, example = _time_kind(frame.get_column(layout.time))
    raw = config.options["horizon_raw"]
    if kind == "datetimes" and not layout.datetime:
        raise config.fail(
            f"telemetry.horizon = {raw!r} is a number of cycles, but time column '{layout.time}' holds datetimes "
            f"(e.g. '{example}')",
            'write the horizon as a duration: horizon = "10m" (minutes), "2h" (hours) or "1d" (days)')
    if kind == "cycles" and layout.datetime:
        raise config.fail(
            f"telemetry.horizon = {raw!r} is a duration, but time column '{layout.time}' counts cycles "
            f"(whole numbers, e.g. {example})",
            "write the horizon as a whole number of cycles, e.g. horizon = 10, or give the time column datetimes")


def _telemetry_schema(config: OwnDataConfig, columns: list[Column]) -> list[Column]:
    from dataclasses import replace

    from verticals.spec import Column

    layout = config.options["layout"]
    out = [Column(layout.machine, "string", "group", on_missing="reject", description="machine identifier"),
           Column(layout.time, "datetime" if layout.datetime else "int", "time", on_missing="reject",
                  description="time of the reading" if layout.datetime else "cycle of the reading")]
    limits = {layout.speed: (0.0, None), layout.torque: (0.0, None), layout.wear: (0.0, None)}
    for column in columns:
        if column.role == "target":
            out.append(replace(column, description="the failure event: positive on the reading where the machine "
                                                    "failed (training only)"))
        elif column.role == "feature":
            if column.name in layout.temperatures:
                column = replace(column, max=500.0, on_out_of_range="reject",
                                 description=column.description or "temperature in kelvin")
            elif column.name in limits and column.min is None:
                column = replace(column, min=0.0, on_out_of_range="reject")
            out.append(column)
    if layout.mode is not None:
        out.append(Column(layout.mode, "string", required=False,
                          description="mode(s) of the failure, e.g. A or A+B (training only, optional)"))
    return out


def _telemetry_pipeline(config: OwnDataConfig, dataset: DatasetSpec) -> Any:
    from verticals_manufacturing.risk import FailureRiskPipeline

    options = config.options
    return FailureRiskPipeline(config.name, config.name, **options["costs"], window=options["window"],
                               horizon=options["horizon"], layout=options["layout"], modes=options["modes"],
                               description=config.description or f"failure risk from telemetry ({config.name})")


def telemetry_template() -> DataTemplate:
    """``manufacturing.telemetry``: a fleet's own telemetry → a ``failure_risk`` pipeline."""
    return DataTemplate(
        name="telemetry", pipeline=_telemetry_pipeline, parse=_telemetry_parse, adjust_schema=_telemetry_schema,
        sections={"telemetry": "machine, time (cycles or datetimes), horizon, window, mode, modes, kelvin, speed, "
                               "torque, wear: the telemetry's columns and the prediction horizon",
                  "costs": _COSTS_HELP},
        defaults={"split": {"strategy": "group_time", "test_fraction": 0.2, "valid_fraction": 0.15}},
        splits=("group_time",), min_rows=MIN_TELEMETRY_ROWS, min_per_class=MIN_FAILURES, check=_telemetry_check,
        example="docs/manufacturing.md",
        description="a fleet's telemetry (machine, time, sensors, failure events): risk of a failure within a "
                    "horizon from a window of readings, mode, cost-based alert")

