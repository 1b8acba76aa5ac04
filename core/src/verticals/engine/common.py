"""What every stage shares: registry look-up, hooks, the stage guard, JSON and git helpers."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import PluginError
from verticals.jsonutil import plain_json
from verticals.spec import Batch

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from verticals.pipeline import Pipeline
    from verticals.spec import DatasetSpec, ModelSpec


if TYPE_CHECKING:  # pragma: no cover
    from verticals.engine.results import FitResult


def _lookup(pipeline: str) -> tuple[Pipeline, DatasetSpec, ModelSpec]:
    from verticals.registry import get_registry

    registry = get_registry()
    pipe = registry.pipeline(pipeline)
    return pipe, registry.dataset_of(pipe), registry.model_of(pipe)


def _notify(hook: str, **kwargs: Any) -> None:
    from verticals.registry import get_registry

    get_registry().notify(hook, **kwargs)


@contextlib.contextmanager
def _stage(pipeline: str, stage: str) -> Iterator[None]:
    """Call ``on_error(pipeline, stage, error)`` once for an error escaping ``stage``, then re-raise."""
    try:
        yield
    except Exception as exc:
        if not getattr(exc, "_verticals_stage", None):
            with contextlib.suppress(Exception):
                exc._verticals_stage = stage  # type: ignore[attr-defined]
            name = pipeline
            with contextlib.suppress(Exception):
                name = _lookup(pipeline)[0].qualified_name
            with contextlib.suppress(Exception):
                _notify("on_error", pipeline=name, stage=stage, error=exc)
        raise


def _git_commit(where: Path) -> str | None:
    """The commit of the git checkout ``where`` belongs to, or None outside one (or without git)."""
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def _json_ready(value: Any, what: str, pipeline: str) -> Any:
    """``value`` round-tripped through JSON (numpy scalars become floats), or a PluginError naming it."""
    try:
        return plain_json(value)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"pipeline '{pipeline}': {what} is not JSON ({exc})",
                          hint="return only dicts, lists, strings, numbers and booleans") from exc


def _state_ready(state: Any, pipeline: str) -> dict[str, Any]:
    """A preprocessor's state for the manifest: JSON values round-tripped (:func:`_json_ready`); numpy
    arrays and polars DataFrames at its top level kept as they are (registration stores them as files,
    :func:`verticals.artifacts.save_state`)."""
    from verticals.artifacts import is_large
    from verticals.fsutil import safe_name

    if not isinstance(state, Mapping):
        raise PluginError(f"pipeline '{pipeline}': preprocessor state is {type(state).__name__}, not a dict",
                          hint="return a dict from Preprocessor.state()")
    large = {key: value for key, value in state.items() if is_large(value)}
    for key, value in large.items():
        try:
            safe_name(str(key), "preprocessor state key")
        except ValueError as exc:
            raise PluginError(f"pipeline '{pipeline}': {exc}",
                              hint="name large state values with plain file names") from exc
        if getattr(value, "dtype", None) is not None and value.dtype.kind == "O":
            raise PluginError(f"pipeline '{pipeline}': preprocessor state '{key}' is a numpy array of Python objects",
                              hint="store numbers or strings as a typed array, or a polars DataFrame")
    rest = _json_ready({k: v for k, v in state.items() if k not in large}, "preprocessor state", pipeline)
    return {key: large[key] if key in large else rest[key] for key in state}


def _slice_batch(batch: Batch, rows: int) -> dict[str, np.ndarray]:
    return {k: v[:rows] for k, v in batch.inputs.items()}


def _eval_device(fitted: FitResult) -> str:
    """The training device where it still exists here (a result made on a GPU machine is evaluated on
    the CPU of one without)."""
    import torch

    return fitted.device if fitted.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
