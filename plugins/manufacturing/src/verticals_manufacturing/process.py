"""``manufacturing.process_failure``: one row per process in the AI4I 2020 layout → probability of a
machine failure, the most likely failure mode, and an alert set by costs.

* Data: :func:`ai4i_schema` (the released file's column names, so the real CSV or a user's file in
  that layout trains with no editing) and the generated ``ai4i2020`` dataset
  (:mod:`verticals_manufacturing.ai4i`).
* Split: **time-ordered by UDI** (70 / 10 / 20 %). The process values are random walks and the tool
  wears over consecutive processes, so neighbouring rows are near copies of each other: a random split
  puts a row's near twin in training and flatters every model; a deployed model only ever scores later
  processes.
* :class:`ProcessPreprocessor`: numpy/polars; the five process values (NaN where a sensor dropped out)
  and the product type index. Temperatures that look like degrees Celsius are rejected with a reason
  that says so. Imputation, the physics features and their scaling run in the exported graph
  (:class:`verticals_manufacturing.graph.ProcessGraph`).
* Model ``process_net``: an MLP over the physics features and a bank of learned soft thresholds on
  them (:class:`verticals_manufacturing.graph.SoftStumps`), with a failure head and a mode head.
* Metrics and threshold: :mod:`verticals_manufacturing.evaluation`; baselines:
  :mod:`verticals_manufacturing.baselines`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from verticals.pipeline import Pipeline
from verticals.spec import (
    Batch,
    Column,
    OutputColumn,
    Preprocessor,
    Schema,
    SplitSpec,
    TensorSpec,
    TrainingConfig,
)

from verticals_manufacturing.ai4i import AIR, MODES, PROCESS, SENSORS, SPEED, TORQUE, TYPES, WEAR
from verticals_manufacturing.evaluation import DEFAULT_FALSE_ALARM_COST, DEFAULT_MISS_COST

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    import torch
    from verticals.spec import DatasetSpec, ReportSection

__all__ = ["ProcessFailurePipeline", "ProcessPreprocessor", "ai4i_schema", "ai4i_split", "celsius_reasons"]

log = logging.getLogger(__name__)

TARGET = "Machine failure"
#: Learned thresholds per physics feature in ``process_net`` (they start at these many training quantiles).
STUMPS = 32
#: Below this a temperature cannot be kelvin in a factory; between -50 and this it reads as °C.
KELVIN_FLOOR = 200.0


def ai4i_schema() -> Schema:
    """The AI4I 2020 layout. Mode flags are read at training (per-mode metrics, the mode head) and
    ignored at scoring; ``Machine failure`` is the target."""
    cols = [
        Column("UDI", "int", "time", on_missing="reject", description="process number, in time order"),
        Column("Product ID", "string", "id", description="product quality letter and serial number"),
        Column("Type", "category", categories=TYPES, on_unknown="reject",
               description="product quality: L (low), M (medium) or H (high)"),
        Column(AIR, "float", on_missing="flag", max=500.0, description="air temperature in kelvin (about 300 K)"),
        Column(PROCESS, "float", on_missing="flag", max=500.0,
               description="process temperature in kelvin (about 310 K)"),
        Column(SPEED, "float", on_missing="flag", min=0.0, max=20_000.0, description="spindle speed"),
        Column(TORQUE, "float", on_missing="flag", min=0.0, max=1_000.0, description="spindle torque"),
        Column(WEAR, "float", on_missing="flag", min=0.0, max=10_000.0, description="minutes the tool has cut"),
        Column(TARGET, "int", "target", categories=("0", "1"), description="1: the process ended in a failure"),
    ]
    cols += [Column(mode, "int", required=False, min=0.0, max=1.0,
                    description=f"label: {mode} failure mode flag (training only; ignored at scoring)")
             for mode in MODES]
    return Schema(tuple(cols))


def ai4i_split() -> SplitSpec:
    return SplitSpec("time", test_fraction=0.2, valid_fraction=0.1)


def celsius_reasons(frame: pl.DataFrame, names: Sequence[str] = (AIR, PROCESS)) -> list[str | None]:
    """Per row, why its temperatures (columns ``names``, in kelvin) are impossible (``None`` when fine).

    Vectorised: text is built only for the rows found wrong.
    """
    import numpy as np

    reasons: list[str | None] = [None] * frame.height
    for name in names:
        if name not in frame.columns:
            continue
        values = frame.get_column(name).cast(float).to_numpy()
        with np.errstate(invalid="ignore"):
            wrong = np.flatnonzero(values < KELVIN_FLOOR)
        for i in wrong.tolist():
            if reasons[i] is not None:
                continue
            value = float(values[i])
            if -50.0 <= value <= 150.0:
                reasons[i] = (f"column '{name}' = {value:g} looks like degrees Celsius, but the column is in "
                              f"kelvin (about 300 K): convert with K = °C + 273.15")
            else:
                reasons[i] = f"column '{name}' = {value:g} K is not a possible process temperature (below {KELVIN_FLOOR:g} K)"
    return reasons


def check_temperatures(frame: pl.DataFrame, names: Sequence[str]) -> np.ndarray:
    """Rows whose temperatures are possible in kelvin; raises when most training rows are not (a file
    in degrees Celsius), naming the column, the values and the conversion."""
    import numpy as np
    from verticals.errors import DataValidationError

    reasons = celsius_reasons(frame, names)
    keep = np.asarray([r is None for r in reasons], dtype=bool)
    if frame.height and keep.mean() < 0.5:
        first = next(r for r in reasons if r is not None)
        raise DataValidationError(
            f"{int((~keep).sum())} of {frame.height} training rows have impossible temperatures, e.g. {first}",
            hint="give temperatures in kelvin (K = °C + 273.15)")
    return keep


class ProcessPreprocessor(Preprocessor):
    """Rows → ``x`` (``[N, 5]`` raw process values, NaN for a dropout) and ``product_type`` (0/1/2).

    Fitted state: the training medians of the five values (imputation) and the means and standard
    deviations of the nine physics features (scaling), both applied inside the exported graph, and
    per feature :data:`STUMPS` training quantiles of the scaled features (where the model's learned
    thresholds start, :class:`~verticals_manufacturing.graph.SoftStumps`).
    """

    rowwise: ClassVar[bool] = True
    materialize: ClassVar[bool] = True

    def __init__(self) -> None:
        self.medians: list[float] = []
        self.means: list[float] = []
        self.stds: list[float] = []
        self.quantiles: list[list[float]] = []

    def _values(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        x = np.column_stack([frame.get_column(c).cast(float).to_numpy() for c in SENSORS]).astype(np.float32)
        index = {t: i for i, t in enumerate(TYPES)}
        types = np.asarray([index.get(t, 0) for t in frame.get_column("Type").to_list()], dtype=np.int64)
        return x, types

    def fit(self, frame: pl.DataFrame) -> None:
        import numpy as np

        from verticals_manufacturing.physics import physics_features

        keep = check_temperatures(frame, (AIR, PROCESS))
        x, types = self._values(frame)
        x, types = x[keep], types[keep]
        medians = np.nanmedian(x, axis=0) if len(x) else np.zeros(5)
        medians = np.where(np.isnan(medians), 0.0, medians)
        features = physics_features(np.where(np.isnan(x), medians, x), types)
        std = features.std(axis=0) if len(features) else np.ones(features.shape[1])
        self.medians = [float(v) for v in medians]
        self.means = [float(v) for v in (features.mean(axis=0) if len(features) else np.zeros(features.shape[1]))]
        self.stds = [float(v) if v > 1e-9 else 1.0 for v in std]
        scaled = (features - np.asarray(self.means)) / np.asarray(self.stds)
        levels = np.linspace(0.01, 0.99, STUMPS)
        self.quantiles = ([[float(q) for q in np.quantile(scaled[:, j], levels)] for j in range(scaled.shape[1])]
                          if len(scaled) else [[float(q) for q in np.linspace(-2, 2, STUMPS)]] * scaled.shape[1])

    def transform(self, frame: pl.DataFrame, *, with_target: bool) -> Batch:
        import numpy as np
        import polars as pl

        from verticals_manufacturing.evaluation import encode_target

        reasons = celsius_reasons(frame)
        bad = np.asarray([r is not None for r in reasons], dtype=bool)
        rejects = pl.DataFrame({"_row": np.flatnonzero(bad).astype(np.int64),
                                "_reason": [r for r in reasons if r is not None]},
                               schema={"_row": pl.Int64, "_reason": pl.String})
        good = frame.filter(pl.Series(~bad)) if bad.any() else frame
        x, types = self._values(good)
        ids = good.select([c for c in ("UDI", "Product ID") if c in good.columns])
        target = aux = None
        if with_target:
            failure = good.get_column(TARGET).to_numpy() > 0
            flags = {m: (good.get_column(m).fill_null(0).to_numpy() > 0) if m in good.columns
                     else np.zeros(good.height, bool) for m in MODES}
            bits = sum((flags[m].astype(np.int64) << i) for i, m in enumerate(MODES))
            target = encode_target(failure, bits)
            aux = pl.DataFrame({m: flags[m].astype(np.int8) for m in MODES}).with_columns(
                pl.Series("Type", good.get_column("Type").to_list(), dtype=pl.String))
        return Batch(ids=ids, inputs={"x": x, "product_type": types}, target=target, aux=aux, rejects=rejects)

    def signature(self) -> dict[str, TensorSpec]:
        return {"x": TensorSpec("float32", (-1, 5)), "product_type": TensorSpec("int64", (-1,))}

    def info(self) -> dict[str, Any]:
        from verticals_manufacturing.physics import FEATURES

        return {"features": list(FEATURES), "types": list(TYPES), "modes": list(MODES), "quantiles": self.quantiles}

    def state(self) -> dict[str, Any]:
        return {"medians": self.medians, "means": self.means, "stds": self.stds, "quantiles": self.quantiles}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.medians = [float(v) for v in state["medians"]]
        self.means = [float(v) for v in state["means"]]
        self.stds = [float(v) for v in state["stds"]]
        self.quantiles = [[float(q) for q in row] for row in state.get("quantiles", [])]

    def graph_module(self) -> torch.nn.Module:
        from verticals_manufacturing.graph import ProcessGraph

        return ProcessGraph(self.medians, self.means, self.stds)


def process_model(info: Mapping[str, Any], hidden: Sequence[int] = (64, 64), stumps: bool = True,
                  sharpness: float = 8.0) -> Any:
    """``process_net``: :class:`~verticals_manufacturing.graph.ProcessNet` with learned soft thresholds
    starting at the training quantiles in ``info`` (``stumps=False``: a plain MLP)."""
    from verticals_manufacturing.graph import ProcessNet

    thresholds = info.get("quantiles") if stumps else None
    return ProcessNet(len(info["features"]), len(info["types"]), len(info["modes"]), hidden=tuple(hidden),
                      thresholds=thresholds or None, sharpness=float(sharpness))


def label_issues(frame: pl.DataFrame) -> dict[str, int]:
    """Rows whose labels contradict each other: a mode flag without a failure (the released AI4I file
    has 18: random failures that did not stop the machine), a failure without any mode flag (9 there).
    ``Machine failure`` is the label learned; the mode flags of a non-failure are ignored."""
    import polars as pl

    present = [m for m in MODES if m in frame.columns]
    if TARGET not in frame.columns or not present:
        return {"mode_without_failure": 0, "failure_without_mode": 0}
    any_mode = pl.any_horizontal([pl.col(m).fill_null(0) > 0 for m in present])
    failed = pl.col(TARGET) > 0
    counts = frame.select((any_mode & ~failed).sum().alias("a"), (failed & ~any_mode).sum().alias("b")).row(0)
    return {"mode_without_failure": int(counts[0]), "failure_without_mode": int(counts[1])}


class ProcessFailurePipeline(Pipeline):
    """Probability of a machine failure per process, its most likely mode, and a cost-based alert.

    Args:
        name, dataset, description: registry names (defaults ``process_failure`` on ``ai4i2020``).
        miss_cost: cost of a failure that raised no alert (default 10,000).
        false_alarm_cost: cost of an alert on a process that did not fail (default 500).
    """

    name = "process_failure"
    description = "Machine failure probability, most likely mode and cost-based alert per process (AI4I 2020 layout)"
    dataset = "ai4i2020"
    model = "process_net"
    task = "binary"
    score_column = "probability"
    primary_metric = "pr_auc"
    greater_is_better = True
    output_columns = (
        OutputColumn("probability", "float", "probability that the process ends in a machine failure"),
        OutputColumn("mode", "string", "most likely failure mode if it fails: TWF, HDF, PWF, OSF or RNF"),
        OutputColumn("mode_probability", "float", "probability of that mode given a failure"),
        OutputColumn("alert", "bool", "probability at or above the cost-based threshold stored with the model"),
    )
    training = TrainingConfig(epochs=120, batch_size=128, learning_rate=3e-3, weight_decay=1e-4, patience=20,
                              class_weighting=False, seed=42)
    mode_names: tuple[str, ...] = MODES

    def __init__(self, name: str | None = None, dataset: str | None = None, *, description: str | None = None,
                 miss_cost: float = DEFAULT_MISS_COST, false_alarm_cost: float = DEFAULT_FALSE_ALARM_COST) -> None:
        if name is not None:
            self.name = name
        if dataset is not None:
            self.dataset = dataset
        if description is not None:
            self.description = description
        if not (miss_cost > 0 and false_alarm_cost > 0):
            raise ValueError(f"pipeline '{self.name}': costs must be positive, got miss_cost={miss_cost}, "
                             f"false_alarm_cost={false_alarm_cost}")
        self.costs = {"miss": float(miss_cost), "false_alarm": float(false_alarm_cost)}

    def preprocessor(self, dataset: DatasetSpec) -> Preprocessor:
        return ProcessPreprocessor()

    def loss(self, outputs: Sequence[torch.Tensor], target: torch.Tensor,
             class_weights: torch.Tensor | None) -> torch.Tensor:
        from verticals_manufacturing.evaluation import failure_loss

        return failure_loss(outputs, target, len(self.mode_names))

    def evaluate(self, predictions: pl.DataFrame, batch: Batch) -> dict[str, Any]:
        from verticals_manufacturing.evaluation import failure_metrics

        return failure_metrics(batch.labels, predictions.get_column("probability").to_numpy(),
                               predictions.get_column("alert").to_numpy(), modes=batch.aux,
                               mode_names=self.mode_names, predicted_mode=predictions.get_column("mode").to_list(),
                               costs=self.costs)

    def fit_extras(self, context: Any) -> dict[str, Any]:
        """The cost-optimal threshold on validation, label issues, and both baselines."""
        from verticals_manufacturing.baselines import baseline_extras
        from verticals_manufacturing.evaluation import choose_threshold

        valid = context.batches["valid"]
        probability = context.predictions["valid"].get_column("probability").to_numpy()
        chosen = choose_threshold(valid.labels, probability, self.costs["miss"], self.costs["false_alarm"])
        issues = label_issues(context.splits.train)
        if issues["mode_without_failure"] or issues["failure_without_mode"]:
            log.warning("%s: training labels disagree: %d row(s) with a mode flag but Machine failure = 0 "
                        "(learned as no failure), %d failure(s) without a mode flag (no mode learned)",
                        self.qualified_name, issues["mode_without_failure"], issues["failure_without_mode"])
        extras: dict[str, Any] = {"threshold": chosen["threshold"], "costs": dict(self.costs),
                                  "valid_expected_cost": chosen["expected_cost"], "cost_curve": chosen["curve"],
                                  "modes": list(self.mode_names), "label_issues": issues}
        extras.update(baseline_extras(self, context, physics=True))
        return extras

    def postprocess(self, outputs: Mapping[str, np.ndarray], batch: Batch,
                    extras: Mapping[str, Any]) -> pl.DataFrame:
        from verticals_manufacturing.outputs import failure_outputs

        return failure_outputs(outputs, extras, self.mode_names)

    def report_sections(self, context: Any) -> list[ReportSection]:
        from verticals_manufacturing.report import failure_sections

        return failure_sections(self, context)
