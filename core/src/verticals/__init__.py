"""verticals: a platform for building and running vertical AI applications.

The public SDK for plugin authors is what ``__all__`` lists. Importing this package is cheap: torch,
onnxruntime and polars are imported only by the functions that need them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from verticals.errors import (
    DataValidationError,
    ModelIntegrityError,
    NotFoundError,
    ParityError,
    PluginError,
    UserError,
    VerticalsError,
)
from verticals.hookspecs import hookimpl
from verticals.spec import (
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
    from verticals.owndata import DataTemplate, OwnDataConfig
    from verticals.pipeline import Pipeline

try:
    __version__ = version("verticals")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "Batch",
    "Column",
    "DataTemplate",
    "DataValidationError",
    "DatasetSpec",
    "ModelIntegrityError",
    "ModelSpec",
    "NotFoundError",
    "OutputColumn",
    "OwnDataConfig",
    "ParityError",
    "Pipeline",
    "PluginError",
    "Preprocessor",
    "ReportSection",
    "Schema",
    "SplitSpec",
    "TensorSpec",
    "TrainingConfig",
    "UserError",
    "VerticalsError",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str) -> object:
    """``Pipeline`` (:mod:`verticals.pipeline`) and ``DataTemplate``/``OwnDataConfig`` (the own-data SDK,
    :mod:`verticals.owndata`) load on first use, so importing the contract stays limited to errors,
    hookspecs and spec."""
    if name == "Pipeline":
        from verticals.pipeline import Pipeline

        return Pipeline
    if name in ("DataTemplate", "OwnDataConfig"):
        from verticals import owndata

        return getattr(owndata, name)
    raise AttributeError(f"module 'verticals' has no attribute {name!r}")
