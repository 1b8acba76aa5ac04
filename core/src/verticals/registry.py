"""The registry of datasets, models and pipelines, built once per process from the plugins.

Each plugin's registration hooks are called with a ``register`` callback that knows the plugin, so
every object is qualified as ``<plugin>.<name>`` and every error names the plugin, the hook, the
object and the fix. Invalid registrations are skipped with a warning (an error under
``VERTICALS_STRICT_PLUGINS=1``), like a plugin that fails to import.
"""

from __future__ import annotations

import difflib
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy

from verticals.errors import NotFoundError, PluginError
from verticals.plugins import PluginInfo, call_impls, load_plugins, report_problem, trace_enabled
from verticals.spec import DatasetSpec, ModelSpec, Pipeline, Schema

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TASKS = {"binary", "multiclass", "regression", "ranking"}
_STRATEGIES = {"stratified", "random", "group", "time"}

T = TypeVar("T")


@dataclass
class Registry:
    """Everything the installed plugins registered."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo]
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    models: dict[str, ModelSpec] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {"dataset": {}, "model": {}, "pipeline": {}})

    # -- lookups ---------------------------------------------------------------------------------------
    def _lookup(self, kind: str, table: Mapping[str, T], name: str) -> T:
        key = self.aliases[kind].get(name, name)
        if key in table:
            return table[key]
        matches = [q for q in table if q.split(".", 1)[-1] == name]
        if len(matches) == 1:
            return table[matches[0]]
        choices = sorted(table) + sorted(self.aliases[kind])
        close = difflib.get_close_matches(name, choices, n=3)
        if len(matches) > 1:
            raise NotFoundError(f"{kind} name '{name}' is ambiguous: {', '.join(sorted(matches))}",
                                hint="use the qualified name <plugin>.<name>")
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else (
            f"run 'verticals {kind}s' to list them" + ("" if table else "; no plugin registered any"))
        raise NotFoundError(f"unknown {kind} '{name}'", hint=hint)

    def dataset(self, name: str) -> DatasetSpec:
        return self._lookup("dataset", self.datasets, name)

    def model(self, name: str) -> ModelSpec:
        return self._lookup("model", self.models, name)

    def pipeline(self, name: str) -> Pipeline:
        return self._lookup("pipeline", self.pipelines, name)

    def dataset_of(self, pipeline: Pipeline) -> DatasetSpec:
        return self.dataset(_qualify(pipeline.dataset, pipeline.plugin))

    def model_of(self, pipeline: Pipeline) -> ModelSpec:
        return self.model(_qualify(pipeline.model, pipeline.plugin))

    def plugin_info(self, plugin_name: str) -> PluginInfo | None:
        return next((p for p in self.plugins if p.name == plugin_name), None)

    # -- lifecycle notifications -------------------------------------------------------------------------
    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin; a plugin that raises is reported, never fatal."""
        infos = {p.name: p for p in self.plugins}
        calls = call_impls(self.pm, hook_name, infos, lambda _name: kwargs)
        while True:
            try:
                next(calls)
            except StopIteration:
                return
            except Exception as exc:  # observers must not break a run
                report_problem(None, f"hook '{hook_name}' raised {type(exc).__name__}: {exc}",
                               hint="fix the plugin's hook implementation")


def _qualify(name: str, plugin: str) -> str:
    return name if "." in name else f"{plugin}.{name}"


class _Registrar:
    """Builds a ``register`` callback for one plugin and one hook, validating what it receives."""

    def __init__(self, registry: Registry, hook: str, kind: str, expected: type, table: dict[str, Any]) -> None:
        self.registry, self.hook, self.kind, self.expected, self.table = registry, hook, kind, expected, table
        self.owner: dict[str, str] = {}

    def for_plugin(self, plugin_name: str) -> Callable[..., None]:
        info = self.registry.plugin_info(plugin_name)
        label = info.label if info else plugin_name

        def register(obj: Any, aliases: tuple[str, ...] | list[str] = ()) -> None:
            where = f"plugin {label} hook `{self.hook}`"
            if not isinstance(obj, self.expected):
                report_problem(info, f"{where}: registered {type(obj).__name__} {obj!r:.60}, expected a "
                               f"{self.expected.__name__}",
                               hint=f"pass an instance of verticals.{self.expected.__name__}")
                return
            name = getattr(obj, "name", "")
            problem = _check(self.kind, obj)
            if problem:
                report_problem(info, f"{where}: {self.kind} '{name}' {problem[0]}", hint=problem[1])
                return
            qualified = f"{plugin_name}.{name}"
            if qualified in self.table:
                first = self.owner.get(qualified, "?")
                report_problem(info, f"{where}: {self.kind} '{qualified}' is already registered by plugin "
                               f"{first}; the second registration by {label} is ignored",
                               hint="give one of them a different name")
                return
            obj.plugin = plugin_name
            self.table[qualified] = obj
            self.owner[qualified] = label
            for alias in aliases:
                taken = self.registry.aliases[self.kind].get(alias)
                if taken and taken != qualified:
                    report_problem(info, f"{where}: alias '{alias}' of {self.kind} '{qualified}' already "
                                   f"points to '{taken}'", hint="choose another alias")
                    continue
                self.registry.aliases[self.kind][alias] = qualified
            if info is not None:
                info.registered.setdefault(self.kind + "s", []).append(qualified)
            if trace_enabled():
                print(f"[verticals trace] registered {self.kind} {qualified} from {label}", file=sys.stderr)

        return register


def _check(kind: str, obj: Any) -> tuple[str, str] | None:
    """Why ``obj`` is not a valid registration, as (problem, fix); None when it is fine."""
    name = getattr(obj, "name", "")
    if not isinstance(name, str) or not _NAME.match(name):
        return (f"has an invalid name {name!r}", "use lowercase letters, digits and underscores")
    if kind == "dataset":
        if not callable(obj.loader):
            return ("has a loader that is not callable", "set loader to a function returning a polars LazyFrame")
        if not isinstance(obj.schema, Schema) or not obj.schema.columns:
            return ("has no schema", "set schema=Schema((Column(...), ...))")
        names = obj.schema.names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            return (f"declares column(s) {', '.join(dupes)} more than once", "remove the duplicate columns")
        if not obj.schema.ids:
            return ("declares no id column", "give one column role='id' so scored rows can be traced back")
        if len(obj.schema.by_role("target")) > 1:
            return ("declares more than one target column", "keep one column with role='target'")
        if obj.split.strategy not in _STRATEGIES:
            return (f"has unknown split strategy '{obj.split.strategy}'", f"use one of {sorted(_STRATEGIES)}")
        if obj.split.strategy == "group" and not obj.schema.group:
            return ("uses the 'group' split but has no group column", "give one column role='group'")
        if obj.split.strategy == "time" and not obj.schema.time:
            return ("uses the 'time' split but has no time column", "give one column role='time'")
        if not 0 < obj.split.test_fraction < 1 or not 0 <= obj.split.valid_fraction < 1 or (
                obj.split.test_fraction + obj.split.valid_fraction >= 1):
            return ("has split fractions outside (0, 1)", "use e.g. test_fraction=0.2, valid_fraction=0.1")
    elif kind == "model":
        if not callable(obj.factory):
            return ("has a factory that is not callable", "set factory to a function returning a torch.nn.Module")
        if not obj.outputs or len(set(obj.outputs)) != len(obj.outputs):
            return ("needs unique, non-empty output names", "set outputs=('logits', ...)")
    elif kind == "pipeline":
        if obj.task not in _TASKS:
            return (f"has unknown task '{obj.task}'", f"use one of {sorted(_TASKS)}")
        if not obj.dataset or not obj.model:
            return ("does not name its dataset and model", "set the class attributes dataset and model")
        cols = [c.name for c in obj.output_columns]
        dupes = sorted({n for n in cols if cols.count(n) > 1})
        if dupes:
            return (f"declares output column(s) {', '.join(dupes)} twice", "remove the duplicates")
        if obj.score_column not in cols:
            return (f"has score_column '{obj.score_column}' that is not among its output columns {cols}",
                    "add it to output_columns or change score_column")
    return None


_lock = threading.Lock()
_registry: Registry | None = None


def build_registry(extra: dict[str, object] | None = None, *, entry_points: bool = True) -> Registry:
    """Load the plugins and call their registration hooks (use :func:`get_registry` instead).

    ``extra`` and ``entry_points`` are passed to :func:`verticals.plugins.load_plugins`.
    """
    pm, infos = load_plugins(extra, entry_points=entry_points)
    registry = Registry(pm=pm, plugins=infos)
    plan = [("register_datasets", "dataset", DatasetSpec, registry.datasets),
            ("register_models", "model", ModelSpec, registry.models),
            ("register_pipelines", "pipeline", Pipeline, registry.pipelines)]
    for hook, kind, expected, table in plan:
        registrar = _Registrar(registry, hook, kind, expected, table)
        calls = call_impls(pm, hook, {p.name: p for p in infos},
                           lambda plugin, r=registrar: {"register": r.for_plugin(plugin)})
        while True:
            try:
                next(calls)
            except StopIteration:
                break
            except PluginError:
                raise
            except Exception as exc:
                report_problem(None, f"hook `{hook}` raised {type(exc).__name__}: {exc}",
                               hint="fix the plugin's registration hook")
    # Pipelines must name datasets and models that exist.
    for qualified, pipe in list(registry.pipelines.items()):
        info = registry.plugin_info(pipe.plugin)
        for what, ref, table in (("dataset", pipe.dataset, registry.datasets), ("model", pipe.model, registry.models)):
            target = registry.aliases[what].get(ref, _qualify(ref, pipe.plugin))
            if target not in table:
                del registry.pipelines[qualified]
                report_problem(info, f"plugin {info.label if info else pipe.plugin} hook `register_pipelines`: "
                               f"pipeline '{qualified}' names {what} '{ref}', which no plugin registered",
                               hint=f"register the {what} or fix the name (registered: {', '.join(sorted(table)) or 'none'})")
                break
    return registry


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = build_registry()
        return _registry


def set_registry(registry: Registry | None) -> Registry | None:
    """Replace the process-wide registry (tests and the plugin SDK); returns the previous one."""
    global _registry
    with _lock:
        previous, _registry = _registry, registry
        return previous


def reset_registry() -> None:
    """Forget the registry so the next :func:`get_registry` rebuilds it (tests, long-lived workers)."""
    global _registry
    with _lock:
        _registry = None
