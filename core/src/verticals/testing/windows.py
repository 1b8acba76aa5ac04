"""A synthetic reference pipeline for machine telemetry: sliding windows of sensor readings per machine.

It proves the grouped shape of the contract end to end (a grouping, streamed preprocessor; a
``group_time`` split with a gap; context rows; skipped rows; auxiliary data; structured metrics and a
baseline in the same run) and is small enough to train in seconds on two CPU cores.

Generating rule of :func:`make_telemetry` (seeded, so anyone can reproduce it):

* machines ``m00 … m{n-1}`` of types press, pump, fan (in turn), each with one reading every
  ``interval_s`` seconds from 2026-01-01 on; sensors ``vibration`` (mm/s), ``temperature`` (°C),
  ``pressure`` (bar) and ``current`` (A) at a per-type level (times ``1 + N(0, 0.05)`` per machine)
  plus AR(1) noise (``e_t = 0.7 e_{t-1} + N(0, 1)``, scaled per sensor), and a daily temperature cycle;
* failures every ``U[60, 130)`` readings (the first after ``precursor + U[8, 80)``), each of a mode
  drawn uniformly: ``bearing`` (vibration rises by up to 6 noise units) or ``overheat`` (temperature by
  up to 8, current by up to 3), as ``amplitude * r ** 1.5`` with ``r`` going from ``1/precursor`` to 1
  over the ``precursor`` readings before the failure; the machine is repaired at the failure reading;
* transient vibration spikes (+6 noise units for one reading) on ``spikes`` of the readings, unrelated
  to failures (what fools a last-reading threshold); ``missing`` of the vibration values are null;
* the label ``failure`` of a reading is 1 when a failure happens within the next ``horizon`` readings
  (at a time in ``(t, t + horizon * interval_s]``);
* ``late_machines`` machines are commissioned at the end: they have only their last
  ``late_readings`` readings (fewer than a window, so they produce no example).

Rows come sorted by time with the machines interleaved, as an event log does.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from verticals.hookspecs import hookimpl
from verticals.pipeline import Pipeline
from verticals.spec import (
    CONTEXT,
    Batch,
    Column,
    DatasetSpec,
    ModelSpec,
    OutputColumn,
    Preprocessor,
    ReportSection,
    Schema,
    SplitSpec,
    TensorSpec,
    TrainingConfig,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = [
    "MACHINE_TYPES",
    "MODES",
    "SENSORS",
    "Telemetry",
    "WindowPreprocessor",
    "WindowsPipeline",
    "WindowsPlugin",
    "average_precision",
    "make_telemetry",
    "telemetry_schema",
]

SENSORS = ("vibration", "temperature", "pressure", "current")
MACHINE_TYPES = ("press", "pump", "fan")
MODES = ("bearing", "overheat")
START = datetime(2026, 1, 1)
INTERVAL_S = 600
_LEVEL = {"press": (2.0, 60.0, 6.0, 12.0), "pump": (1.2, 45.0, 3.0, 8.0), "fan": (0.8, 35.0, 1.0, 4.0)}
_NOISE = (0.15, 1.0, 0.2, 0.4)
_AMPLITUDE = {"bearing": {0: 6.0}, "overheat": {1: 8.0, 3: 3.0}}  # sensor index -> noise units
_RANGES = {"vibration": (0.0, 100.0), "temperature": (-50.0, 250.0), "pressure": (0.0, 100.0),
           "current": (0.0, 500.0)}
_UNITS = {"vibration": "mm/s RMS", "temperature": "°C", "pressure": "bar", "current": "A"}


# -- data ---------------------------------------------------------------------------------------------------
@dataclass
class Telemetry:
    """What :func:`make_telemetry` generates: the readings and the failures behind their labels.

    Attributes:
        frame: one row per reading (``machine``, ``machine_type``, ``time``, sensors, ``failure``).
        events: one row per failure (``machine``, ``time``, ``mode``), for tests and analyses.
    """

    frame: pl.DataFrame
    events: pl.DataFrame


def make_telemetry(machines: int = 24, readings: int = 240, *, horizon: int = 8, precursor: int = 16,
                   seed: int = 0, interval_s: int = INTERVAL_S, spikes: float = 0.01, missing: float = 0.005,
                   late_machines: int = 1, late_readings: int = 10) -> Telemetry:
    """Generate the telemetry dataset (see the module docstring for the rule)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    noise = np.asarray(_NOISE)
    parts, events = [], []
    total = machines + late_machines
    for m in range(total):
        kind = MACHINE_TYPES[m % len(MACHINE_TYPES)]
        first = 0 if m < machines else max(0, readings - late_readings)
        n = readings - first
        level = np.asarray(_LEVEL[kind]) * (1 + rng.normal(0, 0.05, len(SENSORS)))
        shocks = rng.standard_normal((n, len(SENSORS)))
        wander = np.empty_like(shocks)
        wander[0] = shocks[0]
        for t in range(1, n):
            wander[t] = 0.7 * wander[t - 1] + shocks[t]
        x = level + 0.7 * noise * wander
        steps = np.arange(first, readings)
        x[:, 1] += 2.0 * np.sin(2 * np.pi * steps / (86400 / interval_s))
        label = np.zeros(n, dtype=np.int64)
        t = int(precursor + rng.integers(8, 80))
        while t < n:
            mode = MODES[int(rng.integers(0, len(MODES)))]
            k = np.arange(max(0, t - precursor), t)
            ramp = ((k - (t - precursor) + 1) / precursor) ** 1.5
            for sensor, units in _AMPLITUDE[mode].items():
                x[k, sensor] += units * noise[sensor] * ramp
            label[max(0, t - horizon):t] = 1
            events.append((f"m{m:02d}", int(first + t), mode))
            t += int(rng.integers(60, 130))
        spike = rng.random(n) < spikes
        x[spike, 0] += 6 * noise[0]
        x = np.maximum(x, 0.0)
        data: dict[str, Any] = {
            "machine": [f"m{m:02d}"] * n,
            "machine_type": [kind] * n,
            "step": steps,
        }
        for j, name in enumerate(SENSORS):
            data[name] = x[:, j]
        data["failure"] = label
        frame = pl.DataFrame(data)
        gone = rng.random(n) < missing
        if gone.any():
            frame = frame.with_columns(pl.when(pl.Series(gone)).then(None).otherwise(pl.col("vibration"))
                                       .alias("vibration"))
        parts.append(frame)

    def clock(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns((pl.lit(START) + pl.duration(seconds=pl.col("step") * interval_s))
                                  .cast(pl.Datetime("us")).alias("time")).drop("step")

    readings_frame = clock(pl.concat(parts)).sort(["time", "machine"])
    columns = ["machine", "machine_type", "time", *SENSORS, "failure"]
    event_frame = clock(pl.DataFrame(events, schema={"machine": pl.String, "step": pl.Int64, "mode": pl.String},
                                     orient="row")).select("machine", "time", "mode")
    return Telemetry(readings_frame.select(columns), event_frame)


def telemetry_schema() -> Schema:
    """Columns of the telemetry dataset: machine (group), time, type, four sensors, the label."""
    sensors = tuple(Column(name, "float", min=lo, max=hi, description=f"{name} ({_UNITS[name]})")
                    for name, (lo, hi) in _RANGES.items())
    return Schema((
        Column("machine", "string", "group", on_missing="reject", description="machine id"),
        Column("time", "datetime", "time", on_missing="reject", description="time of the reading"),
        Column("machine_type", "category", description="press, pump or fan"),
        *sensors,
        Column("failure", "int", "target", categories=("0", "1"),
               description="1 if the machine fails within the next horizon readings"),
    ))


# -- preprocessing ------------------------------------------------------------------------------------------
class WindowPreprocessor(Preprocessor):
    """One example per reading that has ``window - 1`` earlier readings of its machine: the sliding window
    of the last ``window`` readings ``[window, sensors]`` and the machine's type.

    * Grouping (``rowwise = False``): the core hands it whole machines, or consecutive pieces of one with
      the ``window - 1`` readings before them as :data:`~verticals.spec.CONTEXT` rows; context rows are
      history inside windows, never examples.
    * Streamed (``materialize = False``): a window repeats each reading ``window`` times, so a split as
      model inputs is ``window`` times the raw data; the core transforms a chunk of machines at a time and
      memory does not grow with the number of readings.
    * A reading with fewer than ``window`` readings of its machine up to it makes no example and is
      counted in ``Batch.skipped``; a second reading of a machine at the same time is rejected with its
      reason. Readings are ordered by time within a machine, whatever the input order.
    * ids: ``machine`` and ``time`` of the window's last reading; aux: ``machine`` and ``machine_type``.
    * Missing sensor values stay NaN here; the in-graph module imputes and standardises them, so ONNX
      Runtime does it identically when scoring.
    """

    rowwise = False
    materialize = False
    group_by = "machine"
    order_by = "time"
    chunk_rows = 2048

    def __init__(self, window: int = 16, sensors: tuple[str, ...] = SENSORS) -> None:
        if window < 2:
            raise ValueError(f"WindowPreprocessor: window must be at least 2 readings, got {window} "
                             "(fix: pass window=16, or any W >= 2)")
        self.window = int(window)
        self.context_rows = self.window - 1
        self.sensors = tuple(sensors)
        self.mean: list[float] = []
        self.std: list[float] = []
        self.types: list[str] = []

    @property
    def skip_reason(self) -> str:
        return f"fewer than {self.window} readings of the machine (window)"

    def fit(self, frame: pl.DataFrame) -> None:
        import numpy as np
        import polars as pl

        rows = frame.filter(~pl.col(CONTEXT).fill_null(False)) if CONTEXT in frame.columns else frame
        values = rows.select(pl.col(s).cast(pl.Float64) for s in self.sensors).to_numpy()
        mean = np.nanmean(values, axis=0) if values.size else np.zeros(len(self.sensors))
        std = np.nanstd(values, axis=0) if values.size else np.ones(len(self.sensors))
        self.mean = [float(v) if np.isfinite(v) else 0.0 for v in mean]
        self.std = [float(v) if np.isfinite(v) and v > 1e-6 else 1.0 for v in std]
        self.types = sorted(str(v) for v in rows.get_column("machine_type").drop_nulls().unique().to_list())

    def _examples(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
        """``(example rows, rejected rows, skipped count)``: the frame sorted by machine and time with
        ``__pos`` (position in ``frame``) and ``__index`` (position in the sorted frame)."""
        import polars as pl

        context = pl.col(CONTEXT).fill_null(False) if CONTEXT in frame.columns else pl.lit(False)
        work = (frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("__pos"), context.alias("__ctx"))
                .sort(["machine", "time"], maintain_order=True))
        first = pl.struct("machine", "time").is_first_distinct()
        rejected = work.filter(~first & ~pl.col("__ctx"))
        work = work.filter(first).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("__index"),
                                               pl.int_range(pl.len(), dtype=pl.Int64).over("machine").alias("__seq"))
        enough = pl.col("__seq") >= self.window - 1
        skipped = int(work.select((~pl.col("__ctx") & ~enough).sum()).item())
        return work, rejected, skipped

    def transform(self, frame: pl.DataFrame, *, with_target: bool) -> Batch:
        import numpy as np
        import polars as pl

        work, rejected, skipped = self._examples(frame)
        examples = work.filter(~pl.col("__ctx") & (pl.col("__seq") >= self.window - 1))
        values = work.select(pl.col(s).cast(pl.Float32).fill_null(float("nan")) for s in self.sensors) \
            .to_numpy().astype(np.float32, copy=False)
        last = examples.get_column("__index").to_numpy()
        offsets = np.arange(-self.window + 1, 1)
        windows = np.ascontiguousarray(values[last[:, None] + offsets[None, :]], dtype=np.float32) if last.size \
            else np.zeros((0, self.window, len(self.sensors)), dtype=np.float32)
        vocabulary = {name: i + 1 for i, name in enumerate(self.types)}  # 0: a type never seen in training
        types = examples.get_column("machine_type").cast(pl.String).replace_strict(
            vocabulary, default=0, return_dtype=pl.Int64).to_numpy().astype(np.int64, copy=False)
        target = None
        if with_target:
            target = np.array(examples.get_column("failure").cast(pl.Float32).to_numpy(), dtype=np.float32)
        rejects = None
        if rejected.height:
            rejects = rejected.select(
                pl.col("__pos").alias("_row"),
                pl.format("duplicate reading: machine '{}' already has a reading at {}",
                          pl.col("machine"), pl.col("time")).alias("_reason"))
        return Batch(
            ids=examples.select("machine", "time"),
            inputs={"window": windows, "machine_type": np.array(types, dtype=np.int64)},  # writable copy
            target=target,
            aux=examples.select("machine", pl.col("machine_type").cast(pl.String)),
            rejects=rejects,
            skipped={self.skip_reason: skipped} if skipped else {})

    def targets(self, frame: pl.DataFrame) -> np.ndarray:
        import numpy as np
        import polars as pl

        work, _, _ = self._examples(frame)
        examples = work.filter(~pl.col("__ctx") & (pl.col("__seq") >= self.window - 1))
        return examples.get_column("failure").cast(pl.Float32).to_numpy().astype(np.float32, copy=False)

    def last_readings(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Each example's id (``machine``, ``time``) and its last reading's sensor values: what a
        last-reading rule sees, without building windows."""
        import polars as pl

        work, _, _ = self._examples(frame)
        return work.filter(~pl.col("__ctx") & (pl.col("__seq") >= self.window - 1)).select(
            "machine", "time", *self.sensors)

    def signature(self) -> dict[str, TensorSpec]:
        return {"window": TensorSpec("float32", (-1, self.window, len(self.sensors))),
                "machine_type": TensorSpec("int64", (-1,))}

    def info(self) -> dict[str, Any]:
        return {"window": self.window, "sensors": len(self.sensors), "types": len(self.types) + 1}

    def state(self) -> dict[str, Any]:
        return {"window": self.window, "sensors": list(self.sensors), "mean": self.mean, "std": self.std,
                "types": self.types}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.window = int(state["window"])
        self.context_rows = self.window - 1
        self.sensors = tuple(state["sensors"])
        self.mean = [float(v) for v in state["mean"]]
        self.std = [float(v) for v in state["std"]]
        self.types = [str(v) for v in state["types"]]

    def vocabularies(self) -> dict[str, list[str]]:
        return {"machine_type": list(self.types)}

    def graph_module(self) -> Any:
        from verticals.testing.windows_model import WindowGraph

        return WindowGraph(self.mean, self.std)


# -- metrics ------------------------------------------------------------------------------------------------
def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum (scikit-learn's ``average_precision_score``;
    tied scores form one step); ``nan`` without positives."""
    import numpy as np

    t = np.asarray(y_true, dtype=np.float64).reshape(-1) > 0.5
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    positives = int(t.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]  # last index of each run of equal scores
    hits = np.cumsum(t)[last]
    precision = hits / (last + 1)
    recall = hits / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_f1_threshold(y_true: np.ndarray, y_score: np.ndarray, default: float = 0.5) -> float:
    """The score threshold (alert when ``score >= threshold``) with the best F1; ``default`` without
    positives."""
    import numpy as np

    t = np.asarray(y_true, dtype=np.float64).reshape(-1) > 0.5
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if not t.any() or not s.size:
        return float(default)
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    hits = np.cumsum(t)[last]
    f1 = 2 * hits / (last + 1 + t.sum())
    return float(s[last[int(np.argmax(f1))]])


def alert_metrics(y_true: np.ndarray, y_score: np.ndarray, alert: np.ndarray, types: np.ndarray | None
                  ) -> dict[str, Any]:
    """AUC, PR-AUC, and recall / precision of the alerts, overall and recall per machine type."""
    import numpy as np

    from verticals.metrics import auc

    t = np.asarray(y_true, dtype=np.float64).reshape(-1) > 0.5
    a = np.asarray(alert, dtype=bool).reshape(-1)
    hits = int((t & a).sum())
    out: dict[str, Any] = {
        "auc": auc(t.astype(np.float64), y_score),
        "pr_auc": average_precision(t, y_score),
        "recall": hits / int(t.sum()) if t.any() else float("nan"),
        "precision": hits / int(a.sum()) if a.any() else float("nan"),
        "alert_rate": float(a.mean()) if a.size else float("nan"),
        "positive_rate": float(t.mean()) if t.size else float("nan"),
    }
    if types is not None:
        types = np.asarray(types).astype(str)
        out["recall_by_type"] = {str(kind): float((a & t & (types == kind)).sum() / (t & (types == kind)).sum())
                                 for kind in sorted(set(types[t].tolist()))}
    return out


# -- pipeline -----------------------------------------------------------------------------------------------
class WindowsPipeline(Pipeline):
    """Failure within the next ``horizon`` readings, from the last ``window`` readings of a machine.

    Outputs per window: ``score`` (probability) and ``alert`` (score at or above the threshold with the
    best F1 on the validation split). Metrics: AUC (primary), PR-AUC, recall and precision of the alerts,
    and recall per machine type; the baseline ``last_reading_threshold`` (alert when one sensor of the
    last reading is far from its training mean, threshold fitted on validation) is scored in the same
    run.
    """

    name = "failure_windows"
    description = "Synthetic reference pipeline: failure within a horizon from sliding windows of machine telemetry"
    dataset = "telemetry"
    model = "conv1d"
    task = "binary"
    score_column = "score"
    primary_metric = "auc"
    output_columns = (
        OutputColumn("score", "float", "P(failure within the horizon)"),
        OutputColumn("alert", "bool", "score >= the alert threshold chosen on validation (best F1)"),
    )
    training = TrainingConfig(epochs=8, batch_size=128, learning_rate=3e-3, patience=3)

    def __init__(self, window: int = 16, horizon: int = 8) -> None:
        self.window = int(window)
        self.horizon = int(horizon)

    def preprocessor(self, dataset: DatasetSpec) -> WindowPreprocessor:
        return WindowPreprocessor(self.window, SENSORS)

    def evaluate(self, predictions: pl.DataFrame, batch: Batch) -> dict[str, Any]:
        import numpy as np

        if batch.target is None:
            return {}
        score = predictions.get_column("score").to_numpy()
        alert = predictions.get_column("alert").to_numpy() if "alert" in predictions.columns else score >= 0.5
        types = batch.aux.get_column("machine_type").to_numpy() if batch.aux is not None else None
        return alert_metrics(np.asarray(batch.target), score, alert, types)

    def fit_extras(self, context: Any) -> dict[str, Any]:
        """The alert threshold (best F1 on validation) and the last-reading baseline's test metrics."""
        import polars as pl

        valid = context.batches["valid"]
        threshold = 0.5
        if valid.target is not None and len(valid):
            threshold = best_f1_threshold(valid.target, context.predictions["valid"].get_column("score").to_numpy())
        pre: WindowPreprocessor = context.preprocessor

        def baseline(split: str) -> tuple[np.ndarray, Batch]:
            batch = context.batches[split]
            rows = pre.last_readings(getattr(context.splits, split))
            z = rows.select(((pl.col(s).cast(pl.Float64) - m) / sd).abs().fill_null(0.0).alias(s)
                            for s, m, sd in zip(pre.sensors, pre.mean, pre.std, strict=True))
            rows = rows.select("machine", "time").with_columns(z.max_horizontal().alias("__z"))
            joined = batch.ids.select("machine", "time").join(rows, on=["machine", "time"], how="left",
                                                              maintain_order="left")
            return joined.get_column("__z").fill_null(0.0).to_numpy(), batch

        extras: dict[str, Any] = {"threshold": threshold, "window": self.window, "horizon": self.horizon}
        valid_z, valid_batch = baseline("valid")
        test_z, test_batch = baseline("test")
        if valid_batch.target is not None and len(valid_batch) and len(test_batch):
            z_threshold = best_f1_threshold(valid_batch.target, valid_z, default=3.0)
            types = test_batch.aux.get_column("machine_type").to_numpy() if test_batch.aux is not None else None
            metrics = alert_metrics(test_batch.target, test_z, test_z >= z_threshold, types)
            metrics["threshold_z"] = z_threshold
            extras["baseline_metrics"] = {"last_reading_threshold": metrics}
        return extras

    def postprocess(self, outputs: Mapping[str, np.ndarray], batch: Batch, extras: Mapping[str, Any]
                    ) -> pl.DataFrame:
        import numpy as np
        import polars as pl

        from verticals.postprocess import sigmoid

        score = sigmoid(np.asarray(outputs["logits"], dtype=np.float64).reshape(-1))
        threshold = float(extras.get("threshold", 0.5)) if extras is not None else 0.5
        return pl.DataFrame({"score": score, "alert": score >= threshold})

    def report_sections(self, context: Any) -> list[ReportSection]:
        test = context.metrics.get("test", {})
        baseline = (context.extras.get("baseline_metrics") or {}).get("last_reading_threshold", {})
        kinds = sorted(set(test.get("recall_by_type", {})) | set(baseline.get("recall_by_type", {})))
        if not kinds:
            return []

        def cell(value: Any) -> str:
            return "–" if value is None else f"{value:.3f}"

        rows = "".join(
            f"<tr><td>{html.escape(kind)}</td><td>{cell(test.get('recall_by_type', {}).get(kind))}</td>"
            f"<td>{cell(baseline.get('recall_by_type', {}).get(kind))}</td></tr>" for kind in kinds)
        return [ReportSection(
            "Recall per machine type (test)",
            f"<p>Window {self.window} readings, horizon {self.horizon} readings.</p>"
            f"<table><tr><th>type</th><th>model</th><th>last-reading threshold</th></tr>{rows}</table>")]


def conv1d_factory(info: Mapping[str, Any], channels: int = 32) -> Any:
    """The reference Conv1d over windows (see :class:`verticals.testing.windows_model.WindowNet`)."""
    from verticals.testing.windows_model import WindowNet

    return WindowNet(int(info["sensors"]), int(info["types"]), channels=channels)


class WindowsPlugin:
    """The windows reference plugin: dataset ``telemetry``, model ``conv1d``, pipeline ``failure_windows``.

    ``machines``/``readings`` size the generated data; ``window`` and ``horizon`` are in readings; the
    split is ``group_time`` with a gap of ``horizon`` readings, so no training label reaches past the cut.
    """

    def __init__(self, machines: int = 24, readings: int = 240, *, window: int = 16, horizon: int = 8,
                 precursor: int = 16, seed: int = 0, channels: int = 32, late_machines: int = 1) -> None:
        self.machines, self.readings, self.seed = machines, readings, seed
        self.window, self.horizon, self.precursor = window, horizon, precursor
        self.channels, self.late_machines = channels, late_machines

    def telemetry(self) -> Telemetry:
        return make_telemetry(self.machines, self.readings, horizon=self.horizon, precursor=self.precursor,
                              seed=self.seed, late_machines=self.late_machines,
                              late_readings=max(1, self.window // 2 + 2))

    @hookimpl
    def register_datasets(self, register):
        register(DatasetSpec(
            name="telemetry",
            loader=lambda: self.telemetry().frame.lazy(),
            schema=telemetry_schema(),
            split=SplitSpec("group_time", test_fraction=0.2, valid_fraction=0.2,
                            gap=float(self.horizon * INTERVAL_S)),
            target_positive=1,
            description="Generated machine telemetry with planted failure precursors",
            source="generator: verticals.testing.windows.make_telemetry",
        ))

    @hookimpl
    def register_models(self, register):
        channels = self.channels

        def factory(info, **options):
            return conv1d_factory(info, channels=options.get("channels", channels))

        register(ModelSpec(name="conv1d", factory=factory, outputs=("logits",),
                           description="dilated Conv1d over a window of readings + machine-type embedding"))

    @hookimpl
    def register_pipelines(self, register):
        register(WindowsPipeline(self.window, self.horizon))
