"""The default preprocessor: numeric and categorical columns of a schema into ``x_num`` / ``x_cat``.

Work is split in two so training and scoring cannot disagree:

* :meth:`TabularPreprocessor.transform` (polars/numpy, runs on every scoring batch) only *gathers*:
  raw numeric values as float32 with NaN for missing, and category values mapped through the
  vocabularies fitted on the training split (index 0 = unknown or missing).
* :meth:`TabularPreprocessor.graph_module` (torch, exported into the ONNX graph) imputes the fitted
  medians and standardises, so ONNX Runtime applies exactly what the model was trained on.

Speed: ``x_num`` is built column by column into a **column-major (Fortran-ordered)** float32 array.
Writing a row-major array from polars' columnar storage is a transposition that costs 3–5× the rest of
``transform`` (measured on this machine), and ONNX Runtime and ``torch.from_numpy`` both accept the
column-major layout. Code that hands raw pointers to a device (IOBinding by pointer) must call
``np.ascontiguousarray`` first, or set ``order = "C"`` on the preprocessor.

Target encoding: binary targets become float32 1.0 for the dataset's positive label and 0.0 otherwise;
multiclass targets the int64 index in the label list kept in the state (the column's ``categories`` in
their declared order when given, else the sorted labels of the training split); regression targets
float32. This module never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from verticals.errors import DataValidationError, PluginError
from verticals.spec import Batch, Column, Preprocessor, Schema, TensorSpec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    import torch

__all__ = ["STD_FLOOR", "TabularPreprocessor", "UnsupportedFeatureError", "category_key", "category_key_expr"]

#: Standard deviations below this are raised to it, so a constant column standardises to 0, not inf.
STD_FLOOR = 1e-6
NUMERIC_DTYPES = ("float", "int", "bool")
CATEGORICAL_DTYPES = ("category", "string")
_STATE_FORMAT = 1


def category_key(value: str, mode: str) -> str:
    """How a category value is compared under a column's ``normalize`` mode (see :class:`Column`)."""
    if mode == "exact":
        return value
    value = value.strip()
    return value.casefold() if mode == "casefold" else value


def category_key_expr(expr: pl.Expr, mode: str) -> pl.Expr:
    """:func:`category_key` as a polars expression on a string column (``to_lowercase`` is polars'
    case-fold; it agrees with :meth:`str.casefold` except for a few letters such as German ß)."""
    if mode == "exact":
        return expr
    expr = expr.str.strip_chars()
    return expr.str.to_lowercase() if mode == "casefold" else expr


class UnsupportedFeatureError(PluginError, ValueError):
    """A schema feature whose dtype the tabular preprocessor cannot turn into a model input."""


def _target_key(column: Column) -> pl.Expr:
    """The target as the string labels are compared in (``1`` for an int column read as ``1.0``)."""
    import polars as pl

    c = pl.col(column.name)
    if column.dtype == "int":
        return c.cast(pl.Int64).cast(pl.String)
    if column.dtype == "bool":
        return c.cast(pl.Boolean).cast(pl.String).str.to_lowercase()
    return c.cast(pl.String)


def _label(column: Column, value: Any) -> str:
    """A label written by a plugin author (``"1"``, ``1``, ``True``) in the form of :func:`_target_key`."""
    if column.dtype == "int":
        try:
            return str(int(float(value)))
        except (TypeError, ValueError):
            raise PluginError(
                f"dataset target '{column.name}' is an int column but its positive label is {value!r}",
                hint="set DatasetSpec.target_positive to one of the target's integer values",
            ) from None
    if column.dtype == "bool":
        return "true" if str(value).strip().lower() in ("true", "1", "yes", "1.0") else "false"
    if column.dtype == "float":
        try:
            return str(float(value))
        except (TypeError, ValueError):
            return str(value)
    return str(value)


class TabularPreprocessor(Preprocessor):
    """Numeric and categorical features of ``schema`` into ``x_num`` (float32) and ``x_cat`` (int64).

    Args:
        schema: the dataset's schema; its ``feature`` columns are the model inputs.
        positive: the label of the positive class of a binary target (``DatasetSpec.target_positive``).
            ``None``: the last of the target's declared ``categories``, ``True`` for a bool target,
            ``1`` for a numeric one.
        task: ``binary``, ``multiclass`` or ``regression``; ``None`` infers it from the target column
            (two categories or bool → binary, more categories → multiclass, float → regression, int →
            binary when the training labels are within {0, 1}, else multiclass).
        max_categories: vocabulary size cap per categorical column; rarer values map to "unknown".
        order: memory layout of ``x_num``: ``"F"`` (column-major, fastest) or ``"C"``.

    Raises:
        UnsupportedFeatureError: a feature is a ``datetime`` or ``path`` column.
    """

    def __init__(self, schema: Schema, *, positive: Any = None, task: str | None = None,
                 max_categories: int = 1000, order: Literal["F", "C"] = "F") -> None:
        self.schema = schema
        self.positive_hint = positive
        self.task_hint = task
        self.max_categories = int(max_categories)
        self.order = order
        unsupported = [c for c in schema.features if c.dtype not in NUMERIC_DTYPES + CATEGORICAL_DTYPES]
        if unsupported:
            names = ", ".join(f"'{c.name}' ({c.dtype})" for c in unsupported)
            raise UnsupportedFeatureError(
                f"TabularPreprocessor cannot use feature column(s) {names}",
                hint="derive numeric or categorical features from them in the dataset loader, "
                     "or give the pipeline its own preprocessor",
            )
        self.numeric = [c.name for c in schema.features if c.dtype in NUMERIC_DTYPES]
        self.categorical = [c.name for c in schema.features if c.dtype in CATEGORICAL_DTYPES]
        self.normalize = {c.name: (c.normalize if c.dtype == "category" else "exact") for c in schema.features
                          if c.dtype in CATEGORICAL_DTYPES}
        self.medians: list[float] = []
        self.mins: list[float | None] = []
        self.maxs: list[float | None] = []
        self.means: list[float] = []
        self.stds: list[float] = []
        self.vocab: dict[str, list[str]] = {}
        self.task: str | None = None
        self.positive: str | None = None
        self.labels: list[str] | None = None
        self.fitted = False
        self._enums: dict[str, pl.Enum] = {}

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, frame: pl.DataFrame) -> None:
        """Fit medians, means, standard deviations and vocabularies on the training split's valid rows.

        Means and standard deviations are taken *after* median imputation, because that is what the
        graph module standardises.
        """
        import polars as pl

        if self.numeric:
            floats = frame.select(self._numeric_expr(frame, name, pl.Float64) for name in self.numeric)
            medians = floats.select(pl.all().median()).row(0)
            self.medians = [0.0 if m is None else float(m) for m in medians]
            finite = floats.select(pl.when(pl.all().is_finite()).then(pl.all()).name.keep())
            self.mins = [None if m is None else float(m) for m in finite.select(pl.all().min()).row(0)]
            self.maxs = [None if m is None else float(m) for m in finite.select(pl.all().max()).row(0)]
            filled = floats.select(pl.col(n).fill_null(m) for n, m in zip(self.numeric, self.medians, strict=True))
            means = filled.select(pl.all().mean()).row(0)
            stds = filled.select(pl.all().std(ddof=0)).row(0)
            self.means = [0.0 if m is None else float(m) for m in means]
            self.stds = [STD_FLOOR if s is None or not s > STD_FLOOR else float(s) for s in stds]
        self.vocab = {}
        for name in self.categorical:
            declared = self.schema[name].categories
            if declared is not None:
                self.vocab[name] = [str(v) for v in declared]
                continue
            if name not in frame.columns:
                self.vocab[name] = []
                continue
            values = frame.get_column(name).cast(pl.String)
            mode = self.normalize.get(name, "exact")
            # Spellings that differ only by the column's normalisation ("Rent", "rent ") are one
            # category, named by its most frequent spelling.
            counts = (
                values.filter(values.is_not_null() & (values.str.strip_chars() != ""))
                .to_frame(name).with_columns(category_key_expr(pl.col(name), mode).alias("__key"))
                .group_by("__key", name).len("n")
                .sort(["n", name], descending=[True, False])
                .group_by("__key", maintain_order=True).agg(pl.col(name).first(), pl.col("n").sum())
                .sort(["n", name], descending=[True, False])
                .head(self.max_categories)
            )
            self.vocab[name] = counts.get_column(name).to_list()
        self._fit_target(frame)
        self._enums = {}
        self.fitted = True

    def _fit_target(self, frame: pl.DataFrame) -> None:
        column = self.schema.target
        if column is None:
            self.task = self.task_hint
            return
        present = column.name in frame.columns
        seen: list[str] = []
        if present:
            import polars as pl

            keys = frame.select(_target_key(column).alias("k")).get_column("k").drop_nulls().unique()
            if column.dtype in ("int", "float"):
                seen = [str(v) for v in keys.cast(pl.Float64).sort().to_list()]
                if column.dtype == "int":
                    seen = [str(int(float(v))) for v in seen]
            else:
                seen = sorted(keys.to_list())
        task = self.task_hint
        if task is None:
            if column.categories is not None:
                task = "binary" if len(column.categories) == 2 else "multiclass"
            elif column.dtype == "bool":
                task = "binary"
            elif column.dtype == "float":
                task = "regression"
            elif column.dtype == "int":
                task = "binary" if set(seen) <= {"0", "1"} else "multiclass"
            else:
                task = "binary" if len(seen) <= 2 else "multiclass"
        self.task = task
        if task == "binary":
            positive = self.positive_hint
            if positive is None:
                if column.categories is not None:
                    positive = column.categories[-1]
                elif column.dtype == "bool":
                    positive = True
                elif column.dtype in ("int", "float"):
                    positive = 1
                else:
                    raise PluginError(
                        f"binary target '{column.name}' has labels {', '.join(seen) or '(none)'} "
                        "but the dataset names no positive class",
                        hint="set DatasetSpec.target_positive (or the target column's categories)",
                    )
            self.positive = _label(column, positive)
        elif task == "multiclass":
            if column.categories is not None:
                self.labels = [_label(column, v) for v in column.categories]
            else:
                self.labels = seen

    # -- transforming ------------------------------------------------------------------------------
    @staticmethod
    def _numeric_expr(frame: pl.DataFrame, name: str, dtype: Any) -> pl.Expr:
        import polars as pl

        if name not in frame.columns:
            return pl.lit(None, dtype).alias(name)
        return pl.col(name).cast(dtype).fill_nan(None)

    def transform(self, frame: pl.DataFrame, *, with_target: bool) -> Batch:
        """Gather the model inputs of validated rows.

        ``x_num`` holds raw values (NaN where missing; imputation and scaling are in the graph),
        ``x_cat`` vocabulary indices (0 for unknown or missing). ``flags`` stay ``None``: validation
        already flags unknown categories with :meth:`vocabularies`.
        """
        import numpy as np
        import polars as pl

        self._require_fitted("transform")
        n = frame.height
        present = set(frame.columns)
        inputs: dict[str, np.ndarray] = {}
        if self.numeric and self.order == "C" and present.issuperset(self.numeric):
            # Row-major in one polars pass (nulls become NaN): about twice as fast as the column-major
            # build followed by np.ascontiguousarray, whose transposition is cache-unfriendly.
            inputs["x_num"] = frame.select(pl.col(name).cast(pl.Float32) for name in self.numeric).to_numpy(order="c")
        elif self.numeric:
            x_num = np.empty((n, len(self.numeric)), dtype=np.float32, order="F")
            for j, name in enumerate(self.numeric):
                if name not in present:
                    x_num[:, j] = np.nan
                    continue
                series = frame.get_column(name)
                if not series.dtype.is_float():
                    series = series.cast(pl.Float64)
                # A float column without nulls is read zero-copy; nulls become NaN in the copy.
                x_num[:, j] = series.to_numpy()
            inputs["x_num"] = np.ascontiguousarray(x_num) if self.order == "C" else x_num
        if self.categorical:
            # One polars pass: a cast to an Enum of the vocabulary gives its index (null when unknown),
            # 2-3x faster than replace_strict per column.
            mapped = [name for name in self.categorical if name in present and self.vocab.get(name)]
            codes = frame.select(
                category_key_expr(pl.col(name).cast(pl.String), self._mode(name))
                .cast(self._enum(name), strict=False).to_physical().cast(pl.Int64).fill_null(-1) for name in mapped
            )
            x_cat = np.full((n, len(self.categorical)), -1, dtype=np.int64, order="F")
            for j, name in enumerate(self.categorical):
                if name in codes.columns:
                    x_cat[:, j] = codes.get_column(name).to_numpy()
            x_cat += 1  # index 0 is unknown or missing
            inputs["x_cat"] = np.ascontiguousarray(x_cat) if self.order == "C" else x_cat
        ids = self.schema.ids
        if ids:
            id_frame = frame.select(ids)
        else:
            id_frame = pl.DataFrame({"_row": np.arange(n, dtype=np.int64)})
        target = self._encode_target(frame) if with_target else None
        return Batch(ids=id_frame, inputs=inputs, target=target, flags=None)

    def _enum(self, name: str) -> pl.Enum:
        """The vocabulary of ``name`` as a polars Enum (cached; rebuilt after fit/load_state)."""
        import polars as pl

        enum = self._enums.get(name)
        if enum is None:
            enum = self._enums[name] = pl.Enum([category_key(v, self._mode(name)) for v in self.vocab[name]])
        return enum

    def _mode(self, name: str) -> str:
        """The column's normalisation, or ``exact`` where it would merge two vocabulary entries."""
        mode = self.normalize.get(name, "exact")
        if mode != "exact":
            keys = [category_key(v, mode) for v in self.vocab.get(name, [])]
            if len(set(keys)) != len(keys):
                return "exact"
        return mode

    def _encode_target(self, frame: pl.DataFrame) -> np.ndarray | None:
        import polars as pl

        column = self.schema.target
        if column is None:
            return None
        if column.name not in frame.columns:
            raise DataValidationError(
                f"target column '{column.name}' is missing from the rows to transform",
                hint="validate the frame with stage='train' before transforming it with the target",
            )
        if self.task == "binary":
            key = _target_key(column)
            return frame.select((key == self.positive).fill_null(False).cast(pl.Float32)).to_series().to_numpy()
        if self.task == "multiclass":
            labels = self.labels or []
            codes = frame.select(_target_key(column).replace_strict(
                labels, range(len(labels)), default=-1, return_dtype=pl.Int64)).to_series().to_numpy()
            if (codes < 0).any():
                bad = frame.filter(pl.Series(codes < 0)).get_column(column.name).cast(pl.String).unique().head(5)
                raise DataValidationError(
                    f"target '{column.name}' has label(s) {', '.join(repr(v) for v in bad.to_list())} not seen in "
                    "the training split",
                    hint=f"declare the target's categories in the schema (known: {', '.join(labels)})",
                )
            return codes
        return frame.get_column(column.name).cast(pl.Float32).to_numpy()

    # -- contract ----------------------------------------------------------------------------------
    def signature(self) -> dict[str, TensorSpec]:
        """``x_num`` float32 [-1, F] and ``x_cat`` int64 [-1, C]; an input without features is left out."""
        sig: dict[str, TensorSpec] = {}
        if self.numeric:
            sig["x_num"] = TensorSpec("float32", (-1, len(self.numeric)))
        if self.categorical:
            sig["x_cat"] = TensorSpec("int64", (-1, len(self.categorical)))
        return sig

    def info(self) -> dict[str, Any]:
        """Feature names, embedding sizes (vocabulary + unknown), monotonic constraints and the task."""
        self._require_fitted("info")
        info: dict[str, Any] = {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "cardinalities": [len(self.vocab.get(name, [])) + 1 for name in self.categorical],
            "monotonic": [int(self.schema[name].monotonic) if name in self.schema else 0
                          for name in self.numeric],
            "task": self.task,
        }
        if self.task == "multiclass":
            info["classes"] = list(self.labels or [])
            info["n_classes"] = len(self.labels or [])
        return info

    def state(self) -> dict[str, Any]:
        """Fitted state as JSON (goes into the model manifest)."""
        self._require_fitted("state")
        target = self.schema.target
        return {
            "format": _STATE_FORMAT,
            "numeric": [{"name": n, "median": m, "mean": mu, "std": s, "min": lo, "max": hi}
                        for n, m, mu, s, lo, hi in zip(self.numeric, self.medians, self.means, self.stds,
                                                       self._padded(self.mins), self._padded(self.maxs),
                                                       strict=True)],
            "categorical": [{"name": n, "vocabulary": list(self.vocab.get(n, [])),
                             "normalize": self.normalize.get(n, "exact")} for n in self.categorical],
            "target": {"name": target.name if target else None, "task": self.task,
                       "positive": self.positive, "labels": self.labels},
            "max_categories": self.max_categories,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` output; the column lists come from the state, not the schema."""
        if state.get("format") != _STATE_FORMAT:
            raise PluginError(
                f"TabularPreprocessor state has format {state.get('format')!r}, expected {_STATE_FORMAT}",
                hint="retrain the model with this version of verticals",
            )
        numeric: Sequence[Mapping[str, Any]] = state.get("numeric", [])
        self.numeric = [str(c["name"]) for c in numeric]
        self.medians = [float(c["median"]) for c in numeric]
        self.means = [float(c["mean"]) for c in numeric]
        self.stds = [float(c["std"]) for c in numeric]
        self.mins = [None if c.get("min") is None else float(c["min"]) for c in numeric]
        self.maxs = [None if c.get("max") is None else float(c["max"]) for c in numeric]
        categorical: Sequence[Mapping[str, Any]] = state.get("categorical", [])
        self.categorical = [str(c["name"]) for c in categorical]
        # States written before normalisation existed matched categories exactly.
        self.normalize = {str(c["name"]): str(c.get("normalize", "exact")) for c in categorical}
        self.vocab = {str(c["name"]): [str(v) for v in c["vocabulary"]] for c in categorical}
        target = state.get("target") or {}
        self.task = target.get("task")
        self.positive = target.get("positive")
        self.labels = list(target["labels"]) if target.get("labels") is not None else None
        self.max_categories = int(state.get("max_categories", self.max_categories))
        self._enums = {}
        self.fitted = True

    def vocabularies(self) -> dict[str, list[str]]:
        """Fitted vocabularies by categorical column (index ``i`` in the list is model index ``i + 1``)."""
        return {name: list(self.vocab.get(name, [])) for name in self.categorical}

    def training_ranges(self) -> dict[str, tuple[float, float]]:
        """``(min, max)`` of each numeric feature's finite training values (features never seen: left out)."""
        return {name: (lo, hi) for name, lo, hi in zip(self.numeric, self._padded(self.mins), self._padded(self.maxs),
                                                       strict=True) if lo is not None and hi is not None}

    def category_modes(self) -> dict[str, str]:
        """Each categorical column's effective normalisation (validation matches values the same way)."""
        return {name: self._mode(name) for name in self.categorical}

    def _padded(self, values: list[float | None]) -> list[float | None]:
        return list(values) if len(values) == len(self.numeric) else [None] * len(self.numeric)

    def graph_module(self) -> torch.nn.Module:
        """Median imputation and standardisation of ``x_num`` as a torch module (buffers, no parameters)."""
        from verticals.data.tabular_graph import TabularGraph

        self._require_fitted("graph_module")
        return TabularGraph(self.medians, self.means, self.stds)

    def _require_fitted(self, what: str) -> None:
        if not self.fitted:
            raise PluginError(
                f"TabularPreprocessor.{what}() called before fit()",
                hint="call fit() on the training split or load_state() from a manifest first",
            )
