"""The plugin contract: every hook a verticals plugin may implement.

A plugin is a module (or object) exposed through the ``verticals`` entry-point group whose functions
are decorated with :data:`verticals.hookimpl` and named like the specs below. Implementations may
take fewer arguments than the spec (pluggy passes only those named), so new arguments can be added
without breaking plugins.

Registration hooks receive a ``register`` callback instead of returning lists; the registry attaches
the plugin's name, qualifies the object as ``<plugin>.<name>``, validates it and rejects duplicates.
Lifecycle hooks are notifications: their return values are ignored and an exception they raise is
reported as a warning naming the plugin, never allowed to break a training or scoring run.

Each hook is documented in ``docs/hooks.md``; a test fails when one is missing there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import typer

PROJECT = "verticals"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- registration ------------------------------------------------------------------------------------
@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Register the datasets this plugin offers.

    Called once per process by the registry, when it is first built.

    Args:
        register: call ``register(DatasetSpec(...), aliases=())`` once per dataset.

    Returns:
        Nothing; return values are ignored.
    """


@hookspec
def register_models(register: Callable[..., None]) -> None:
    """Register the PyTorch model factories this plugin offers.

    Called once per process by the registry.

    Args:
        register: call ``register(ModelSpec(...))`` once per model.
    """


@hookspec
def register_pipelines(register: Callable[..., None]) -> None:
    """Register the pipelines this plugin offers: the units users train, score and schedule.

    Called once per process by the registry, after datasets and models, so a pipeline may name
    datasets and models of any plugin.

    Args:
        register: call ``register(MyPipeline())`` once per pipeline (an instance of a
            :class:`verticals.Pipeline` subclass).
    """


@hookspec
def register_data_templates(register: Callable[..., None]) -> None:
    """Register templates that turn a user's own data file into one of this plugin's pipelines.

    Called once per process by the registry, before datasets. A user's config names a template
    (``template = "finance.credit"``); the core checks the config and its data file, stores it
    (``verticals data register``) and registers its dataset and pipeline as ``<plugin>.<name>``.
    See :mod:`verticals.owndata` and ``docs/own-data.md``.

    Args:
        register: call ``register(DataTemplate(...))`` once per template.
    """


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add sub-commands to the ``verticals`` CLI.

    Called by the CLI when it starts. Import heavy libraries inside the command functions, never at
    module level: ``verticals --help`` must stay fast.

    Args:
        app: the root ``typer.Typer``; call ``app.command()(fn)`` or ``app.add_typer(...)``.
    """


# -- lifecycle ---------------------------------------------------------------------------------------
@hookspec
def before_train(pipeline: str, config: Mapping[str, Any]) -> None:
    """A training run of ``pipeline`` is about to start.

    Called by :func:`verticals.engine.train` (and the Prefect train flow) after the data was loaded
    and split, before the first epoch.

    Args:
        pipeline: qualified pipeline name, e.g. ``finance.credit_risk``.
        config: the run's configuration: ``epochs``, ``seed``, ``device``, ``data`` (path or None),
            ``rows`` per split.
    """


@hookspec
def after_train(pipeline: str, metrics: Mapping[str, Any], history: list[Mapping[str, float]]) -> None:
    """A training run finished and was evaluated on the test split.

    Args:
        pipeline: qualified pipeline name.
        metrics: ``{"train": {...}, "valid": {...}, "test": {...}}`` metric values.
        history: one dict per epoch with ``epoch``, ``train_loss``, ``valid_loss`` and the primary
            metric on validation.
    """


@hookspec
def after_export(pipeline: str, path: Path, parity: Mapping[str, Any]) -> None:
    """A model was exported to ONNX and checked against PyTorch.

    Args:
        pipeline: qualified pipeline name.
        path: the ``.onnx`` file (in a staging folder; it moves when registered).
        parity: ``max_abs_diff``, ``tolerance``, ``rows`` and ``passed``.
    """


@hookspec
def after_register(pipeline: str, version: int, path: Path, manifest: Mapping[str, Any]) -> None:
    """A model version was written to the model registry.

    Args:
        pipeline: qualified pipeline name.
        version: the new version number.
        path: the version's folder.
        manifest: the version's manifest as written.
    """


@hookspec
def after_score_batch(pipeline: str, version: int, batch_index: int, rows_in: int, rows_scored: int,
                      rows_rejected: int, seconds: float) -> None:
    """A batch was scored (called from the scoring thread; keep it quick).

    Args:
        pipeline: qualified pipeline name.
        version: model version used.
        batch_index: 0-based batch number within the run.
        rows_in, rows_scored, rows_rejected: row accounting of the batch.
        seconds: wall time spent on this batch.
    """


@hookspec
def on_error(pipeline: str, stage: str, error: BaseException) -> None:
    """A run failed. Called before the error propagates.

    Args:
        pipeline: qualified pipeline name.
        stage: ``load``, ``validate``, ``split``, ``fit``, ``evaluate``, ``export``, ``verify``,
            ``register`` or ``score``.
        error: the exception.
    """


REGISTRATION_HOOKS = ("register_data_templates", "register_datasets", "register_models", "register_pipelines")
LIFECYCLE_HOOKS = ("before_train", "after_train", "after_export", "after_register", "after_score_batch",
                   "on_error")
