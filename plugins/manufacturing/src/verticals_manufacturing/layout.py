"""Which columns of a telemetry table mean what, for ``failure_risk`` (numpy and polars only).

The built-in ``fleet`` dataset uses :data:`FLEET_LAYOUT`; a user's own telemetry names its columns in
the ``[telemetry]`` section of a ``manufacturing.telemetry`` config (:mod:`verticals_manufacturing.owndata`).

Time is either an integer **cycle** count or a **datetime**. Windows are the last ``W`` readings of a
machine whatever their spacing; the horizon ``H``, the split's gap and the alert lead time are in the time
column's unit: cycles for integers, seconds for datetimes (a config writes them as ``"12h"``, ``"90m"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from verticals_manufacturing.fleet import FLEET_SENSORS

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = ["FLEET_LAYOUT", "TelemetryLayout", "parse_duration"]


@dataclass(frozen=True)
class TelemetryLayout:
    """Column names of telemetry.

    Attributes:
        machine: the machine identifier (grouping).
        time: the reading's time: an increasing integer cycle or a datetime (``datetime=True``).
        sensors: the numeric readings, in the order the model sees them.
        failure: 1 on the reading where the machine failed (training only).
        mode: the failure's mode(s), e.g. ``HDF`` or ``HDF+PWF`` (training only, optional).
        temperatures: sensors in kelvin; a value that reads as degrees Celsius is rejected with the reason.
            With exactly two (e.g. air and process temperature), the graph adds their difference
            (second − first) as a channel.
        speed, torque, wear: sensors (rpm, Nm, min) from which the graph adds the power and wear × torque
            channels; ``None`` leaves a channel out.
        datetime: whether ``time`` holds datetimes.
    """

    machine: str = "machine_id"
    time: str = "cycle"
    sensors: tuple[str, ...] = FLEET_SENSORS
    failure: str = "failure"
    mode: str | None = "failure_mode"
    temperatures: tuple[str, ...] = ("air_temperature", "process_temperature")
    speed: str | None = "rotational_speed"
    torque: str | None = "torque"
    wear: str | None = "tool_wear"
    datetime: bool = False
    #: The ``failure`` label of a failure (compared as text, or as a number where it is one).
    positive: str = "1"

    @property
    def unit(self) -> str:
        """The unit of the horizon, the gap and lead times: ``cycles`` or ``seconds``."""
        return "seconds" if self.datetime else "cycles"

    def index(self, name: str | None) -> int:
        """Position of sensor ``name`` (``-1`` when ``None``)."""
        return self.sensors.index(name) if name is not None else -1

    @property
    def physics(self) -> tuple[str, ...]:
        """The channels the graph adds after the sensors."""
        out = []
        if self.speed is not None and self.torque is not None:
            out.append("power_kw")
        if self.wear is not None and self.torque is not None:
            out.append("wear_torque")
        if len(self.temperatures) == 2:
            out.append("temperature_difference")
        return tuple(out)

    @property
    def channels(self) -> tuple[str, ...]:
        return (*self.sensors, *self.physics)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sensors"], out["temperatures"] = list(self.sensors), list(self.temperatures)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TelemetryLayout:
        data = dict(data)
        data["sensors"] = tuple(data["sensors"])
        data["temperatures"] = tuple(data.get("temperatures") or ())
        return cls(**data)

    def numeric_time(self, values: pl.Series) -> np.ndarray:
        """Times as float64 in this layout's unit (seconds since 1970 for datetimes)."""
        import numpy as np
        import polars as pl

        if values.dtype.is_temporal():
            return (values.dt.epoch("us").cast(pl.Float64) / 1e6).to_numpy()
        return values.cast(pl.Float64).to_numpy().astype(np.float64)

    def numeric_time_expr(self) -> pl.Expr:
        import polars as pl

        col = pl.col(self.time)
        return (col.dt.epoch("us").cast(pl.Float64) / 1e6) if self.datetime else col.cast(pl.Float64)

    def failed_expr(self) -> pl.Expr:
        """True on the readings where the machine failed."""
        import polars as pl

        col = pl.col(self.failure)
        out = col.cast(pl.String).str.strip_chars() == self.positive
        try:
            number = float(self.positive)
        except ValueError:
            return out.fill_null(False)
        return (out | (col.cast(pl.Float64, strict=False) == number)).fill_null(False)

    def describe(self, seconds_or_cycles: float) -> str:
        """A duration in this layout's unit, for messages and reports (``10 cycles``, ``2.5 h``)."""
        if not self.datetime:
            return f"{seconds_or_cycles:g} cycles"
        for size, unit in ((86_400, "d"), (3600, "h"), (60, "min")):
            if seconds_or_cycles and seconds_or_cycles % size == 0:
                return f"{seconds_or_cycles / size:g} {unit}"
        return f"{seconds_or_cycles:g} s"


FLEET_LAYOUT = TelemetryLayout()

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|sec|m|min|h|d|w)?\s*$")
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(value: Any, *, datetime: bool) -> float:
    """A horizon or gap as a number in the layout's unit: cycles (a whole number) for integer time;
    for datetimes a string such as ``"90m"``, ``"12h"``, ``"2d"`` (or a number of seconds).

    Raises:
        ValueError: with a message that says which form is expected.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        number = float(value)
        if not number > 0:
            raise ValueError(f"{value!r} is not positive")
        if not datetime and not number.is_integer():
            raise ValueError(f"{value!r} is not a whole number of cycles")
        return number
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration")
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration such as \"12h\", \"90m\" or \"2d\"")
    if not datetime:
        if match["unit"]:
            raise ValueError(f"{value!r} has a unit, but the time column counts cycles: write a whole number")
        return parse_duration(float(match["n"]), datetime=False)
    number = float(match["n"]) * _SECONDS[match["unit"] or "s"]
    if not number > 0:
        raise ValueError(f"{value!r} is not positive")
    return number
