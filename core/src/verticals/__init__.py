"""verticals: a platform for building and running vertical AI applications.

The public SDK for plugin authors is what ``__all__`` lists. Importing this package is cheap: torch,
onnxruntime and polars are imported only by the functions that need them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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
    Pipeline,
    Preprocessor,
    ReportSection,
    Schema,
    SplitSpec,
    TensorSpec,
    TrainingConfig,
)

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
    """``DataTemplate`` and ``OwnDataConfig`` (the own-data SDK) load :mod:`verticals.owndata` on first
    use, so importing the contract stays limited to errors, hookspecs and spec."""
    if name in ("DataTemplate", "OwnDataConfig"):
        from verticals import owndata

        return getattr(owndata, name)
    raise AttributeError(f"module 'verticals' has no attribute {name!r}")
