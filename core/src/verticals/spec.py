"""The objects plugins register: datasets, models and pipelines, and the types they are made of.

One contract serves four shapes of work by treating every input as a polars frame:

* tabular rows (credit risk): one row per applicant;
* image files (imaging): one row per file, a ``path`` column points at the pixels;
* user-item interactions (recommendation): one row per interaction, grouped by user;
* sensor readings (failure prediction): one row per reading, grouped by machine, ordered by time.

A pipeline's :class:`Preprocessor` turns such a frame into a :class:`Batch`: the id columns of each
*example* (an applicant, an image, a user, a machine window), named numpy arrays the model takes, and
the targets. Its row count may differ from the frame's (one user or window from many rows). The part of
preprocessing that can live in the exported graph (imputation, normalisation) does, so ONNX Runtime
applies it identically at scoring time; the rest (category vocabularies, file decoding, windowing) is
numpy/polars code whose fitted state travels in the model's manifest.

Nothing here imports torch or onnxruntime: scoring uses these types without them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    import torch

__all__ = [
    "Batch",
    "Column",
    "DatasetSpec",
    "ModelSpec",
    "OutputColumn",
    "Pipeline",
    "Preprocessor",
    "ReportSection",
    "Schema",
    "SplitSpec",
    "TensorSpec",
    "TrainingConfig",
]

Role = Literal["id", "feature", "target", "group", "time", "weight", "attribute"]
DType = Literal["float", "int", "category", "string", "bool", "datetime", "path"]
Task = Literal["binary", "multiclass", "regression", "ranking"]


@dataclass(frozen=True)
class Column:
    """One column of a dataset's schema and the rules that apply to its values.

    The same rules are enforced when a model is trained and when a batch is scored, so a value that was
    rejected in training is rejected in scoring too.

    Attributes:
        name: column name in the frame.
        dtype: logical type. ``category`` values are mapped through a vocabulary fitted on the training
            split; values never seen there map to an "unknown" index (``on_unknown``).
        role: ``id`` columns are carried to the output, ``feature`` columns feed the model, ``target``
            is what is learned, ``group`` keeps related rows on one side of a split, ``time`` orders it.
            ``attribute`` columns are validated and kept with the rows for reports (e.g. a protected
            attribute for fair-lending checks) but are never a model input; they are optional at scoring.
        required: a missing *column* is a hard error when scoring (targets are never required there).
        on_missing: what a missing *value* (null, NaN, empty) does: ``impute`` (fitted on the training
            split), ``flag`` (impute and add the column name to the row's flags) or ``reject``.
        min, max: the valid range, inclusive. Infinity is always out of range.
        on_out_of_range: ``reject`` the row with a reason, ``clip`` to the range, or ``flag`` and clip.
        on_unknown: for categories not in the training vocabulary: ``unknown`` (map to the unknown
            index), ``flag`` (map and flag) or ``reject``.
        categories: for a target or a closed category, the values allowed; others are rejected.
        monotonic: +1 if the model's risk must not decrease as this feature grows, -1 if it must not
            increase, 0 for no constraint. Pipelines that support it enforce it by construction.
        description: one line for the docs and the report.
        range_margin: numeric features only. Values beyond the range seen in the training split by more
            than this fraction of that range are clipped into it and flagged
            ``<name>:out_of_training_range``; a negative value in a column that was never negative in
            training is clipped and flagged ``<name>:negative_never_seen``. ``None`` turns both off.
        normalize: categorical features only: how a value is matched against the vocabulary.
            ``casefold`` (trimmed and case-folded: ``" YES"`` is ``yes``), ``trim`` or ``exact``.
    """

    name: str
    dtype: DType = "float"
    role: Role = "feature"
    required: bool = True
    on_missing: Literal["impute", "flag", "reject"] = "impute"
    min: float | None = None
    max: float | None = None
    on_out_of_range: Literal["reject", "clip", "flag"] = "reject"
    on_unknown: Literal["unknown", "flag", "reject"] = "unknown"
    categories: tuple[str, ...] | None = None
    monotonic: Literal[-1, 0, 1] = 0
    description: str = ""
    range_margin: float | None = 0.1
    normalize: Literal["casefold", "trim", "exact"] = "casefold"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Column:
        data = dict(data)
        if data.get("categories") is not None:
            data["categories"] = tuple(data["categories"])
        return cls(**data)


@dataclass(frozen=True)
class Schema:
    """The columns of a dataset, with their roles and validation rules."""

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))

    def __iter__(self):
        return iter(self.columns)

    def __getitem__(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def by_role(self, role: Role) -> list[Column]:
        return [c for c in self.columns if c.role == role]

    @property
    def ids(self) -> list[str]:
        return [c.name for c in self.by_role("id")]

    @property
    def features(self) -> list[Column]:
        return self.by_role("feature")

    @property
    def target(self) -> Column | None:
        found = self.by_role("target")
        return found[0] if found else None

    @property
    def group(self) -> str | None:
        found = self.by_role("group")
        return found[0].name if found else None

    @property
    def time(self) -> str | None:
        found = self.by_role("time")
        return found[0].name if found else None

    def without_target(self) -> Schema:
        """The schema scoring input must satisfy: everything but the target."""
        return Schema(tuple(c for c in self.columns if c.role != "target"))

    def to_dict(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.columns]

    @classmethod
    def from_dict(cls, data: Sequence[Mapping[str, Any]]) -> Schema:
        return cls(tuple(Column.from_dict(c) for c in data))


@dataclass(frozen=True)
class SplitSpec:
    """How a dataset is split into train, validation and test.

    Attributes:
        strategy: ``stratified`` (random, preserving the target's class balance), ``random``,
            ``group`` (all rows of a group, e.g. a patient, user or machine, fall on one side) or
            ``time`` (validation strictly after train, test strictly after validation).
        test_fraction, valid_fraction: fractions of the whole dataset (of groups, for ``group``; of
            the time span's rows, for ``time``).
    """

    strategy: Literal["stratified", "random", "group", "time"] = "stratified"
    test_fraction: float = 0.2
    valid_fraction: float = 0.1


@dataclass
class DatasetSpec:
    """A dataset a plugin offers.

    Attributes:
        name: local name, unique within the plugin; the registry qualifies it as ``<plugin>.<name>``.
        loader: returns the data as a polars ``LazyFrame`` (or ``DataFrame``). Called with no
            arguments; must not download anything. File datasets (images) return one row per file with
            a ``path``-typed column.
        schema: columns, roles and rules.
        split: the split strategy.
        kind: ``tabular`` or ``files``.
        target_positive: for a binary target, the label value that means the positive class (e.g.
            ``"bad"`` for credit default).
        description, source, license: shown by ``verticals datasets`` and in reports; ``source`` says
            where the data comes from (a package that ships it, or the published rules a generator
            follows).
    """

    name: str
    loader: Callable[[], pl.LazyFrame | pl.DataFrame]
    schema: Schema
    split: SplitSpec = field(default_factory=SplitSpec)
    kind: Literal["tabular", "files"] = "tabular"
    target_positive: Any = None
    description: str = ""
    source: str = ""
    license: str = ""
    # Filled in by the registry.
    plugin: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}.{self.name}" if self.plugin else self.name


@dataclass(frozen=True)
class TensorSpec:
    """One named model input or output: numpy dtype name and shape, ``-1`` for the batch axis."""

    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["dtype"]), tuple(int(s) for s in data["shape"]))


@dataclass
class ModelSpec:
    """A PyTorch model a plugin offers, and its export signature.

    Attributes:
        name: local name, unique within the plugin.
        factory: ``factory(info, **options) -> torch.nn.Module``. ``info`` is the fitted
            preprocessor's :meth:`Preprocessor.info` (feature counts, vocabulary sizes, ...);
            ``options`` come from :meth:`Pipeline.model_options`. The module's ``forward`` takes the
            preprocessor's inputs as keyword arguments (names from :meth:`Preprocessor.signature`) and
            returns one tensor or a tuple of tensors named by ``outputs``. The first output is what the
            loss is computed on (logits for classification).
        outputs: names of the ONNX graph's outputs, in ``forward``'s return order.
        description: one line.
    """

    name: str
    factory: Callable[..., torch.nn.Module]
    outputs: tuple[str, ...] = ("logits",)
    description: str = ""
    plugin: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}.{self.name}" if self.plugin else self.name


@dataclass
class Batch:
    """Examples ready for a model: ids, named input arrays, targets and per-row flags.

    Attributes:
        ids: one row per example with its id columns (and group/time columns where the pipeline keeps
            them); the same height as every array's first axis.
        inputs: model inputs by name, numpy arrays with the dtypes of :meth:`Preprocessor.signature`.
        target: the encoded target per example (float 0/1 for binary, int class for multiclass), or
            ``None`` when scoring.
        flags: per example, a comma-separated list of flagged columns (empty string for none), or
            ``None``.
    """

    ids: pl.DataFrame
    inputs: dict[str, np.ndarray]
    target: np.ndarray | None = None
    flags: pl.Series | None = None

    def __len__(self) -> int:
        return self.ids.height


class Preprocessor:
    """Turns frames into :class:`Batch` es; fitted on the training split only.

    Subclasses implement the five methods below. Fitted state is JSON (``state``/``load_state``) so it
    travels in the manifest; the in-graph part (:meth:`graph_module`) is exported with the model.

    Attributes:
        rowwise: ``True`` when each input row becomes exactly one example, so scoring may cut the input
            into row batches anywhere. A pipeline that groups rows (sessions, windows) sets ``False`` and
            receives whole partitions (a file or a Parquet row group) at scoring time.
    """

    rowwise: ClassVar[bool] = True

    def fit(self, frame: pl.DataFrame) -> None:
        """Learn vocabularies, imputation values and scales from the training split."""
        raise NotImplementedError

    def transform(self, frame: pl.DataFrame, *, with_target: bool) -> Batch:
        """Turn validated rows into a batch. ``with_target`` is False at scoring time."""
        raise NotImplementedError

    def signature(self) -> dict[str, TensorSpec]:
        """The model inputs ``transform`` produces, by name, in the order of the ONNX graph's inputs."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Facts the model factory needs (feature counts, vocabulary sizes)."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Fitted state as JSON-serialisable data."""
        raise NotImplementedError

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore fitted state written by :meth:`state`."""
        raise NotImplementedError

    def vocabularies(self) -> dict[str, list[str]]:
        """Fitted category vocabularies by column; validation applies ``on_unknown`` rules with them."""
        return {}

    def training_ranges(self) -> dict[str, tuple[float, float]]:
        """``(min, max)`` of each numeric feature on the training split; scoring's validation applies
        the columns' ``range_margin`` rule with them. Empty when the preprocessor learns none."""
        return {}

    def graph_module(self) -> torch.nn.Module | None:
        """Preprocessing that runs inside the exported graph, before the model.

        Its ``forward`` takes and returns the model inputs as keyword arguments / a dict of tensors.
        ``None`` when everything happens in :meth:`transform`.
        """
        return None


@dataclass(frozen=True)
class OutputColumn:
    """A column the pipeline adds to scoring output."""

    name: str
    dtype: Literal["float", "int", "string", "list[string]", "list[int]", "list[float]", "bool"]
    description: str = ""


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults of the training loop; ``verticals train`` options override some of them."""

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 5
    class_weighting: bool = True
    seed: int = 42
    #: Below this many training + validation rows, early stopping and the pipeline's calibration use
    #: ``crossfit_folds``-fold cross-fitting instead of the single validation split
    #: (:mod:`verticals.crossfit`); 0 turns it off.
    crossfit_below: int = 0
    crossfit_folds: int = 5


@dataclass
class ReportSection:
    """A section a pipeline adds to the training report.

    Attributes:
        title: heading.
        html: trusted HTML fragment (tables, text). Build it with :mod:`html` escaping.
        images: PNG files (paths inside the report folder) shown under the fragment.
    """

    title: str
    html: str = ""
    images: list[str] = field(default_factory=list)


class Pipeline:
    """The unit users train, score and schedule: binds a dataset, preprocessing, a model, metrics,
    report sections and the scoring output.

    Subclass it and set the class attributes; override methods where the default does not fit. The
    registry names an instance ``<plugin>.<name>`` (e.g. ``finance.credit_risk``).

    Class attributes:
        name: local name.
        dataset: the default dataset's name, local to the plugin or qualified (``other.dataset``).
        model: the model's name, local or qualified.
        task: ``binary``, ``multiclass``, ``regression`` or ``ranking``.
        score_column: the output column the primary metric is computed on.
        primary_metric, greater_is_better: what early stopping and variant checks use.
        output_columns: what scoring adds per example, besides the id columns and ``model_version``.
        training: defaults of the training loop.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    dataset: ClassVar[str] = ""
    model: ClassVar[str] = ""
    task: ClassVar[Task] = "binary"
    score_column: ClassVar[str] = "score"
    primary_metric: ClassVar[str] = "auc"
    greater_is_better: ClassVar[bool] = True
    output_columns: ClassVar[tuple[OutputColumn, ...]] = (OutputColumn("score", "float", "P(positive)"),)
    training: ClassVar[TrainingConfig] = TrainingConfig()

    # Filled in by the registry.
    plugin: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}.{self.name}" if self.plugin else self.name

    # -- preprocessing and model -------------------------------------------------------------------
    def preprocessor(self, dataset: DatasetSpec) -> Preprocessor:
        """A fresh, unfitted preprocessor for ``dataset``. Default: tabular features of its schema."""
        from verticals.data.tabular import TabularPreprocessor

        return TabularPreprocessor(dataset.schema, positive=dataset.target_positive, task=self.task)

    def model_options(self, dataset: DatasetSpec, info: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword options passed to the model factory after ``info``."""
        return {}

    # -- learning ------------------------------------------------------------------------------------
    def loss(self, outputs: Sequence[torch.Tensor], target: torch.Tensor,
             class_weights: torch.Tensor | None) -> torch.Tensor:
        """Training loss from the model's outputs. Default by ``task`` (weighted when configured)."""
        from verticals.training import default_loss

        return default_loss(self.task, outputs[0], target, class_weights)

    def metrics(self, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
        """Metrics on one split. ``y_score`` is the ``score_column`` of :meth:`postprocess`."""
        from verticals.metrics import default_metrics

        return default_metrics(self.task, y_true, y_score)

    def fit_extras(self, context: Any) -> dict[str, Any]:
        """Fit what comes after the network (calibration, reference distributions, baselines).

        Called once after training with a :class:`verticals.training.TrainContext`; the returned JSON
        is stored in the manifest under ``extras`` and handed back to :meth:`postprocess`.
        """
        return {}

    # -- scoring -------------------------------------------------------------------------------------
    def postprocess(self, outputs: Mapping[str, np.ndarray], batch: Batch,
                    extras: Mapping[str, Any]) -> pl.DataFrame:
        """Turn the graph's outputs for one batch into the ``output_columns`` (no torch here).

        Default: for ``binary``, ``score = sigmoid(first output)``; for ``multiclass``, the softmax's
        argmax and its probability; for ``regression``, the value.
        """
        from verticals.postprocess import default_postprocess

        return default_postprocess(self.task, outputs)

    # -- reporting -----------------------------------------------------------------------------------
    def report_sections(self, context: Any) -> list[ReportSection]:
        """Extra sections of the training report (context: :class:`verticals.training.TrainContext`)."""
        return []
