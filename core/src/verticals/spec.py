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
    "CONTEXT",
    "Batch",
    "Column",
    "DatasetSpec",
    "ModelSpec",
    "OutputColumn",
    "Preprocessor",
    "ReportSection",
    "Schema",
    "ScoringContext",
    "ScoringParameter",
    "SplitSpec",
    "TensorSpec",
    "TrainingConfig",
    "target_labels",
]

Role = Literal["id", "feature", "target", "group", "time", "weight", "attribute"]
DType = Literal["float", "int", "category", "string", "bool", "datetime", "path"]
Task = Literal["binary", "multiclass", "regression", "ranking"]
ParityKind = Literal["float", "indices", "none"]

CONTEXT = "_context"
"""Name of the boolean column that marks *context* rows in a frame handed to a preprocessor.

Context rows are earlier rows of a group (a user's history, a machine's preceding readings) that a
grouping preprocessor may read but must not turn into examples: they belong to the training history
of a test user, or were already scored in the previous row group. Splits add the column to the
validation and test frames of ``leave_last`` and ``group_time`` splits; scoring adds it to the rows it
carries across batch boundaries. A frame without the column has no context rows. Row-wise
preprocessors never see context rows: the core drops them first.
"""


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
        sensitive: the column identifies a person (a patient id, a name): scoring never writes its
            values into ``_rejects.parquet`` (null there) nor quotes them in a reject's reason.
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
    sensitive: bool = False

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
        strategy:
            ``stratified`` (random, preserving the target's class balance), ``random``,
            ``group`` (all rows of a group, e.g. a patient, fall on one side),
            ``time`` (validation strictly after train, test strictly after validation),
            ``leave_last`` (per group, ordered by time: the last ``holdout`` rows of each group are
            test, the ``holdout`` before them validation, the rest training; earlier rows of a group
            reach validation and test as context) or
            ``group_time`` (per group, ordered by time, cut at global times with a ``gap`` before each
            cut, so no training example's label window reaches into validation or test; earlier rows
            are context).
        test_fraction, valid_fraction: fractions of the whole dataset (of groups, for ``group``; of
            the time span's rows, for ``time`` and ``group_time``). Unused by ``leave_last``.
        holdout: rows per group held out for test (and as many for validation), ``leave_last`` only.
        min_rows: groups with fewer rows stay wholly in training (``leave_last``).
        gap: for ``group_time``, the time between the last training example and the first validation
            example (and between validation and test), in the time column's unit (seconds for
            datetimes); at least the prediction horizon.
        positive_only: for ``leave_last``, only rows whose target is the positive label can be held
            out (implicit feedback: a rating below the threshold is history, never a test item).
    """

    strategy: Literal["stratified", "random", "group", "time", "leave_last", "group_time"] = "stratified"
    test_fraction: float = 0.2
    valid_fraction: float = 0.1
    holdout: int = 1
    min_rows: int = 3
    gap: float = 0.0
    positive_only: bool = False


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
        outputs: names of ``forward``'s results, in order (what training sees).
        scoring: optional ``scoring(trained_module) -> torch.nn.Module`` whose ``forward`` takes the
            same inputs and returns what is exported, named by ``score_outputs`` (e.g. full-catalogue
            logits in training, the top-k item indices and scores, seen items masked, in the graph).
            Evaluation, parity and scoring all use it, so scoring reproduces evaluation. ``None``:
            the trained module is exported as it is.
        score_outputs: names of the exported graph's outputs (default: ``outputs``).
        parity: how the parity check compares each exported output: ``float`` (within tolerance, the
            default for floating outputs), ``indices`` (integer indices such as top-k items: the sets
            per row must match, except where the paired float output shows a tie; the default for
            integer outputs) or ``none`` (not compared).
        description: one line.
    """

    name: str
    factory: Callable[..., torch.nn.Module]
    outputs: tuple[str, ...] = ("logits",)
    scoring: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    score_outputs: tuple[str, ...] | None = None
    parity: Mapping[str, ParityKind] = field(default_factory=dict)
    description: str = ""
    plugin: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}.{self.name}" if self.plugin else self.name

    @property
    def exported_outputs(self) -> tuple[str, ...]:
        """Names of the exported graph's outputs."""
        return tuple(self.score_outputs) if self.score_outputs else tuple(self.outputs)


def target_labels(target: np.ndarray) -> np.ndarray:
    """The label per example of an encoded target ``[N]`` or ``[N, K]`` (its column 0; see :class:`Batch`)."""
    import numpy as np

    target = np.asarray(target)
    return target if target.ndim == 1 else target.reshape(len(target), -1)[:, 0]


@dataclass
class Batch:
    """Examples ready for a model: ids, named input arrays, targets and per-row flags.

    Attributes:
        ids: one row per example with its id columns (and group/time columns where the pipeline keeps
            them); the same height as every array's first axis.
        inputs: model inputs by name, numpy arrays with the dtypes of :meth:`Preprocessor.signature`.
            Empty in a *light* batch (ids, targets and auxiliary data of a split too large to hold).
        target: the encoded target per example (float 0/1 for binary, int class for multiclass, item
            index for ranking), or ``None`` when scoring. It may have more columns (``[N, K]``) for a
            pipeline whose own ``loss`` learns from more than the label (auxiliary targets); the core
            then reads column 0 as the label (:attr:`labels`: positive rate, class weights,
            stratification, the report's curves).
        flags: per example, a comma-separated list of flagged columns (empty string for none), or
            ``None``.
        aux: per-example auxiliary data for metrics and reports (failure mode, class list, group), one
            row per example; never a model input. ``None`` for none.
        rejects: input rows the preprocessor could not turn into an example (an undecodable image):
            ``_row`` (the row's position in the frame given to ``transform``) and ``_reason``. They
            go to the rejects with their reason and the rest of the batch goes on.
        skipped: valid input rows that produced no example, counted by reason (a machine with fewer
            readings than a window). Context rows are never counted here.
    """

    ids: pl.DataFrame
    inputs: dict[str, np.ndarray]
    target: np.ndarray | None = None
    flags: pl.Series | None = None
    aux: pl.DataFrame | None = None
    rejects: pl.DataFrame | None = None
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.ids.height

    @property
    def labels(self) -> np.ndarray | None:
        """The label per example, ``[N]``: the target, or its column 0 when it has several."""
        return None if self.target is None else target_labels(self.target)

    def take(self, index: Any) -> Batch:
        """The examples at ``index`` (a slice or an integer array), as a new batch.

        ``rejects`` and ``skipped`` stay with this batch: they describe input rows that produced no
        example, so no subset of the examples owns them (the engine counts them once, per transform).
        """
        import numpy as np
        import polars as pl

        if isinstance(index, slice):
            rows = range(len(self))[index]
            sel = pl.Series(np.arange(rows.start, rows.stop, rows.step, dtype=np.int64)) if rows.step != 1 else None
            pick = (lambda f: f.slice(rows.start, len(rows))) if sel is None else (lambda f: f[sel])
        else:
            sel = pl.Series(np.asarray(index, dtype=np.int64))
            pick = lambda f: f[sel]  # noqa: E731
        return Batch(ids=pick(self.ids), inputs={k: v[index] for k, v in self.inputs.items()},
                     target=None if self.target is None else self.target[index],
                     flags=None if self.flags is None else pick(self.flags),
                     aux=None if self.aux is None else pick(self.aux))

    def light(self) -> Batch:
        """This batch without its model inputs (ids, target, flags, aux): what metrics need."""
        return Batch(ids=self.ids, inputs={}, target=self.target, flags=self.flags, aux=self.aux,
                     skipped=dict(self.skipped))

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """One batch of ``batches``' examples in order (rejects and skipped counts are summed)."""
        import numpy as np
        import polars as pl

        batches = [b for b in batches if b is not None]
        if not batches:
            raise ValueError("no batches to concatenate")
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        skipped: dict[str, int] = {}
        for b in batches:
            for reason, count in b.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + count
        rejects = [b.rejects for b in batches if b.rejects is not None and b.rejects.height]
        return Batch(
            ids=pl.concat([b.ids for b in batches], how="vertical_relaxed"),
            inputs={k: np.concatenate([b.inputs[k] for b in batches]) for k in first.inputs},
            target=None if first.target is None else np.concatenate([b.target for b in batches]),
            flags=None if first.flags is None else pl.concat([b.flags for b in batches]),
            aux=None if first.aux is None else pl.concat([b.aux for b in batches], how="vertical_relaxed"),
            rejects=pl.concat(rejects, how="vertical_relaxed") if rejects else None,
            skipped=skipped)


class Preprocessor:
    """Turns frames into :class:`Batch` es; fitted on the training split only.

    Subclasses implement the six methods below. Fitted state is JSON (``state``/``load_state``) so it
    travels in the manifest; the in-graph part (:meth:`graph_module`) is exported with the model.

    How the core feeds it (class attributes, all optional):

    Attributes:
        rowwise: ``True`` when each input row becomes exactly one example, so training and scoring may
            cut the input into row batches anywhere. A pipeline that groups rows (a user's history, a
            machine's windows) sets ``False`` and names its grouping in ``group_by``.
        materialize: ``True`` when a whole split fits in memory as model inputs (tabular rows): it is
            transformed once and sliced into mini-batches. ``False`` (image files, windows): the core
            transforms one chunk of rows at a time, in ``workers`` threads, every epoch, so memory does
            not grow with the number of examples.
        group_by: the column whose rows belong together (user, machine, study). Training chunks and
            scoring batches hold whole groups (or, for a group too large for one batch, consecutive
            rows of it with ``context_rows`` earlier rows marked as :data:`CONTEXT`). Scoring groups an
            input that is not grouped (an event log) before it reads it, with bounded memory.
        order_by: the column that orders the rows of a group (time); ``None`` keeps the input order.
        context_rows: how many earlier rows of a group an example may need (a window's length minus
            one; ``None`` for the whole history).
        workers: threads that run :meth:`transform` on chunks in parallel (0: as many as cores, at
            most 8). Decoding libraries (Pillow, pydicom, numpy) release the GIL for the heavy part.
        chunk_rows: rows per transform call when not materialized (default: the training batch size).
    """

    rowwise: ClassVar[bool] = True
    materialize: ClassVar[bool] = True
    group_by: ClassVar[str | None] = None
    order_by: ClassVar[str | None] = None
    context_rows: ClassVar[int | None] = None
    workers: ClassVar[int] = 0
    chunk_rows: ClassVar[int | None] = None

    def fit(self, frame: pl.DataFrame) -> None:
        """Learn vocabularies, imputation values and scales from the training split."""
        raise NotImplementedError

    def transform(self, frame: pl.DataFrame, *, with_target: bool) -> Batch:
        """Turn validated rows into a batch. ``with_target`` is False at scoring time.

        A row that cannot become an example (an undecodable file) goes to ``Batch.rejects`` with its
        reason, and the rest of the frame is still transformed. A grouping preprocessor reads the
        :data:`CONTEXT` column, when present, and makes no example of a context row.
        """
        raise NotImplementedError

    def targets(self, frame: pl.DataFrame) -> np.ndarray | None:
        """The encoded target of every example ``frame`` would give, without building the inputs (class
        weights of a streamed split). ``None``: the core runs one pass of :meth:`transform` instead."""
        return None

    def augment(self, batch: Batch, rng: np.random.Generator) -> Batch:
        """Random augmentation of a *training* batch (never validation, test or scoring). Default: none.

        ``rng`` is seeded from the training seed, the epoch and the chunk, so a run is reproducible.
        """
        return batch

    def signature(self) -> dict[str, TensorSpec]:
        """The model inputs ``transform`` produces, by name, in the order of the ONNX graph's inputs."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Facts the model factory needs (feature counts, vocabulary sizes)."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Fitted state: a dict of JSON-serialisable values, stored in the model's manifest.

        A value that grows with the data (known histories of a million users, a large vocabulary) may
        instead be a ``numpy.ndarray`` (not of Python objects) or a ``polars.DataFrame`` at the top level
        of the dict: registration stores it as a file of the model version (``preprocessor/<key>.npy`` /
        ``.parquet``, checked by sha256 like every file there) and the manifest holds a reference, so
        opening a model never parses it as JSON. Keys of such values must be plain file names.
        """
        raise NotImplementedError

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore fitted state written by :meth:`state`; large values come back as the same types
        (a numpy array or a polars DataFrame)."""
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


class ScoringContext(Mapping[str, Any]):
    """What :meth:`Pipeline.postprocess` gets besides the outputs: the manifest's ``extras`` (it reads
    like that dict, so ``context["calibration"]`` works), the model version's named ``artifacts``
    (loaded once per scoring session, sha256-verified) and, while scoring a part, a folder for side
    outputs (per-example files committed atomically with the part).
    """

    def __init__(self, extras: Mapping[str, Any] | None = None, artifacts: Mapping[str, Any] | None = None,
                 side_dir: Any = None, part: str = "", input_root: Any = None,
                 params: Mapping[str, Any] | None = None) -> None:
        self.extras: dict[str, Any] = dict(extras or {})
        self.artifacts: Mapping[str, Any] = artifacts if artifacts is not None else {}
        #: The run's scoring parameters (:meth:`Pipeline.scoring_parameters`, defaults filled in);
        #: empty while training.
        self.params: dict[str, Any] = dict(params or {})
        self._side_dir = side_dir
        self.part = part
        #: While scoring a folder of files (images): that folder, so postprocess can name each file
        #: relative to it (the frame's path column holds full paths). ``None`` otherwise.
        self.input_root: str | None = str(input_root) if input_root is not None else None

    def __getitem__(self, key: str) -> Any:
        return self.extras[key]

    def __iter__(self):
        return iter(self.extras)

    def __len__(self) -> int:
        return len(self.extras)

    @property
    def writes_side_outputs(self) -> bool:
        """True while scoring into an output folder (side outputs are possible)."""
        return self._side_dir is not None

    def side_output(self, name: str) -> tuple[Any, str]:
        """``(path to write, relative path for the table)`` for one side-output file of this part.

        ``name`` is a file name (no folders); the file lands in ``<part>/<name>`` next to the part file
        and appears only when the part commits. Raises ``ValueError`` for a name that is not a plain
        file name and ``RuntimeError`` outside a scoring run.
        """
        from pathlib import Path

        from verticals.fsutil import safe_name

        if self._side_dir is None:
            raise RuntimeError("side outputs are written only while scoring into an output folder")
        name = safe_name(name, "side-output file name")
        folder = Path(self._side_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name, f"{self.part}/{name}"

    def with_part(self, side_dir: Any, part: str, input_root: Any = None) -> ScoringContext:
        return ScoringContext(self.extras, self.artifacts, side_dir, part, input_root, self.params)


@dataclass(frozen=True)
class ScoringParameter:
    """A parameter of a scoring run that a pipeline declares (``verticals score --k 20``,
    ``--param k=20``), checked by the core before anything is scored.

    Attributes:
        name: the parameter's name (``k``).
        description: one line for errors and help.
        default: the value when the run does not set it.
        minimum, maximum: the inclusive bounds (``None``: unbounded); a pipeline derives them from the
            model version (e.g. the catalogue size).
        maximum_reason: why ``maximum`` is the bound, for the error (``"the catalogue has 80 items"``).
    """

    name: str
    description: str
    default: int
    minimum: int | None = None
    maximum: int | None = None
    maximum_reason: str = ""


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults of the training loop; ``verticals train`` options override some of them.

    ``class_weighting`` is off by default: weighting classes by inverse frequency moves every
    predicted probability towards the minority class (a binary score's mean is then far above the
    positive rate), so an output documented as a probability stops being one. Turn it on only for
    scores used as rankings, or calibrate afterwards (``Pipeline.fit_extras``).
    """

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 5
    class_weighting: bool = False
    seed: int = 42
    #: Below this many training + validation rows, early stopping and the pipeline's calibration use
    #: ``crossfit_folds``-fold cross-fitting instead of the single validation split
    #: (:mod:`verticals.crossfit`); 0 turns it off.
    crossfit_below: int = 0
    crossfit_folds: int = 5
    #: What the model of a cross-fitted run is: ``"refit"`` — one model trained on every pooled row for
    #: the folds' median best epoch; ``"bag"`` — the average of the K early-stopped fold models, which
    #: share one preprocessor fitted on the pooled rows (one exported graph; every output averaged, so
    #: only for outputs that average meaningfully, such as logits and additive contributions).
    crossfit_final: str = "refit"
    #: What the fold models of a cross-fitted run early-stop on: ``"metric"`` (the pipeline's primary
    #: metric) or ``"loss"`` (the held-out fold's loss: on a fold of a few hundred rows a ranking
    #: metric such as AUC is noisy enough to stop a fold model after a handful of epochs).
    crossfit_stop_on: str = "metric"
    #: How many times K-fold cross-fitting runs, over different (seeded) fold assignments: each pooled
    #: row's out-of-fold output is then the mean of that many models that never saw it, and ``"bag"``
    #: averages ``crossfit_folds * crossfit_repeats`` models. Training time grows in proportion.
    crossfit_repeats: int = 1
    #: Mini-batch size of the fold models (0: ``batch_size``). A fold of a small file has a few hundred
    #: training rows, so the run-wide ``batch_size`` may leave only a few optimizer steps per epoch.
    crossfit_batch_size: int = 0
    #: Cross-fit over folds of whole **groups** (the dataset's ``role="group"`` column: machines,
    #: patients, users) on every run, whatever its size (``crossfit_below`` does not apply). Each fold
    #: model trains on the other groups' pooled training and validation rows and early-stops on its
    #: held-out groups; the test split and the gap before it stay untouched. For grouped or
    #: time-ordered data whose validation split is too small to choose an epoch and a threshold on
    #: (:mod:`verticals.crossfit`). Cross-fitting that ``crossfit_below`` turns on over a grouped split
    #: (``group``, ``group_time``, ``leave_last``) cuts folds of whole groups too.
    crossfit_groups: bool = False
    #: Train this many models on the same split, with seeds ``seed``, ``seed + 1``, …, each early-stopped
    #: on the validation split, and average them into one (:class:`verticals.ensemble.AveragedModel`:
    #: one exported graph, every output the members' mean; so only for outputs that average meaningfully,
    #: such as logits). Lowers the variance of a network whose result moves with its seed; training time
    #: grows in proportion. 1: one model. Cross-fitted runs ignore it (``crossfit_final="bag"`` averages).
    ensemble: int = 1


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


def __getattr__(name: str) -> Any:
    # The contract module holds types only; the Pipeline base class (whose default methods use the
    # tabular preprocessor, the splits, the metrics and the training loop) lives in verticals.pipeline.
    if name == "Pipeline":
        raise ImportError(
            "Pipeline moved from verticals.spec to verticals.pipeline: "
            "import it as `from verticals import Pipeline` (or `from verticals.pipeline import Pipeline`)"
        )
    raise AttributeError(f"module 'verticals.spec' has no attribute {name!r}")
