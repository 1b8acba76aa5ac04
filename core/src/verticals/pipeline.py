"""The :class:`Pipeline` base class: what a plugin subclasses to bind a dataset, preprocessing, a
model, metrics, report sections and the scoring output.

The contract's types (:mod:`verticals.spec`) import nothing of the platform; this module gives the
base class its default behaviour from the implementations (tabular preprocessing, the split
strategies, the default loss, metrics and postprocess). Importing it stays cheap: none of those
modules imports torch, polars, numpy or scikit-learn at import time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from verticals.data.splits import split_frame
from verticals.data.tabular import TabularPreprocessor
from verticals.metrics import default_metrics
from verticals.postprocess import default_postprocess
from verticals.spec import (
    Batch,
    DatasetSpec,
    OutputColumn,
    Preprocessor,
    ReportSection,
    ScoringContext,
    ScoringParameter,
    Task,
    TrainingConfig,
)
from verticals.training import default_loss

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import torch

__all__ = ["Pipeline"]


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
        return TabularPreprocessor(dataset.schema, positive=dataset.target_positive, task=self.task)

    def model_options(self, dataset: DatasetSpec, info: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword options passed to the model factory after ``info``."""
        return {}

    # -- learning ------------------------------------------------------------------------------------
    def loss(self, outputs: Sequence[torch.Tensor], target: torch.Tensor,
             class_weights: torch.Tensor | None) -> torch.Tensor:
        """Training loss from the model's outputs. Default by ``task`` (weighted when configured)."""
        return default_loss(self.task, outputs[0], target, class_weights)

    def split(self, frame: pl.DataFrame, dataset: DatasetSpec, seed: int) -> Any:
        """Split validated rows into train / validation / test (:class:`verticals.data.splits.Splits`).

        Default: the dataset's :class:`SplitSpec` through :func:`verticals.data.splits.split_frame`
        (``stratified``, ``random``, ``group``, ``time``, ``leave_last``, ``group_time``). Override to
        split another way; validation and test frames may carry :data:`CONTEXT` rows.
        """
        return split_frame(frame, dataset, seed, positive=dataset.target_positive)

    def metrics(self, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
        """Metrics on one split. ``y_score`` is the ``score_column`` of :meth:`postprocess`."""
        return default_metrics(self.task, y_true, y_score)

    def evaluate(self, predictions: pl.DataFrame, batch: Batch) -> dict[str, Any]:
        """Metrics of one split from its predictions (what :meth:`postprocess` returned) and its
        examples (``batch.target``, ``batch.aux``, ``batch.ids``; model inputs are not kept).

        Values are floats, or dicts of floats for structured metrics (per-class AUROC, per-mode
        recall); the primary metric must be a float. Default: :meth:`metrics` on the target and the
        score column.
        """
        if batch.target is None:
            return {}
        return dict(self.metrics(batch.labels, predictions.get_column(self.score_column).to_numpy()))

    def fit_extras(self, context: Any) -> dict[str, Any]:
        """Fit what comes after the network (calibration, reference distributions, baselines).

        Called once after training with a :class:`verticals.training.TrainContext`; the returned JSON
        is stored in the manifest under ``extras`` and handed back to :meth:`postprocess`. It may also
        complete ``context.preprocessor``'s scoring-time state (a recommender's known histories with
        the held-out rows): the model version stores the preprocessor's state as it is afterwards.
        """
        return {}

    def artifacts(self, context: Any) -> Mapping[str, Any]:
        """Named files stored in the model version next to the ONNX model (an item catalogue, a
        popularity vector, a neighbour matrix, thresholds), called after :meth:`fit_extras`.

        Values: a numpy array (saved as ``.npy``, loaded back without pickle), a polars DataFrame
        (saved as Parquet), ``bytes``, or a :class:`pathlib.Path` of a file to copy. They are
        sha256-verified with the model, loaded once per scoring session and reach :meth:`postprocess`
        as ``context.artifacts[name]`` (arrays and frames as such, other files as paths).
        """
        return {}

    # -- scoring -------------------------------------------------------------------------------------
    def postprocess(self, outputs: Mapping[str, np.ndarray], batch: Batch,
                    extras: Mapping[str, Any]) -> pl.DataFrame:
        """Turn the graph's outputs for one batch into the ``output_columns`` (no torch here).

        ``extras`` is a :class:`ScoringContext`: it reads like the manifest's ``extras`` dict and also
        carries ``extras.artifacts`` and, while scoring, ``extras.side_output(name)`` for per-example
        files (return their relative paths in a string column). During training (validation metrics,
        and the first evaluation pass that :meth:`fit_extras` sees) extras and artifacts are still
        empty: postprocess must work without them.

        Default: for ``binary``, ``score = sigmoid(first output)``; for ``multiclass``, the softmax's
        argmax and its probability; for ``regression``, the value.
        """
        return default_postprocess(self.task, outputs)

    def summarize(self, parts: Sequence[Any], context: ScoringContext) -> Mapping[str, pl.DataFrame]:
        """Tables over a whole scoring output (per study, per machine), written next to the parts.

        Called once per scoring run, after every part is written and before the output moves into
        place, with the part files (Parquet paths; empty parts left out) and the scoring context. Each
        returned frame is written as ``_<name>.parquet`` (``name``: lowercase letters, digits and
        underscores) and listed in ``_manifest.json`` under ``summaries``. Default: none.
        """
        return {}

    def scoring_parameters(self, extras: Mapping[str, Any]) -> Sequence[ScoringParameter]:
        """The integer parameters a scoring run of this pipeline takes (e.g. ``k``, the list length),
        with bounds for the model version whose manifest ``extras`` are given. Default: none.
        :meth:`postprocess` reads the run's values as ``extras.params[name]``."""
        return ()

    # -- reporting -----------------------------------------------------------------------------------
    def report_sections(self, context: Any) -> list[ReportSection]:
        """Extra sections of the training report (context: :class:`verticals.training.TrainContext`)."""
        return []
