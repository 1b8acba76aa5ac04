"""What every stage shares: registry look-up, hooks, the stage guard, JSON and git helpers."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
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


def _slice_batch(batch: Batch, rows: int) -> dict[str, np.ndarray]:
    return {k: v[:rows] for k, v in batch.inputs.items()}


def _eval_device(fitted: FitResult) -> str:
    """The training device where it still exists here (a result made on a GPU machine is evaluated on
    the CPU of one without)."""
    import torch

    return fitted.device if fitted.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
