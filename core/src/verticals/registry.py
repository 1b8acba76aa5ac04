"""The registry of datasets, models and pipelines, built once per process from the plugins.

Each plugin's registration hooks are called with a ``register`` callback that knows the plugin, so
every object is qualified as ``<plugin>.<name>`` and every error names the plugin, the hook, the
object and the fix. Invalid registrations are skipped with a warning (an error under
``VERTICALS_STRICT_PLUGINS=1``), like a plugin that fails to import.
"""

from __future__ import annotations

import difflib
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy

from verticals.errors import NotFoundError, PluginError
from verticals.names import NAME_MAX, name_problem
from verticals.owndata import DataTemplate, OwnDataConfig
from verticals.pipeline import Pipeline
from verticals.plugins import PluginInfo, call_impls, load_plugins, report_problem, trace_enabled
from verticals.spec import DatasetSpec, ModelSpec, Schema

_TASKS = {"binary", "multiclass", "regression", "ranking"}
_STRATEGIES = {"stratified", "random", "group", "time", "leave_last", "group_time"}

T = TypeVar("T")


@dataclass
class Registry:
    """Everything the installed plugins registered."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo]
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    models: dict[str, ModelSpec] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    templates: dict[str, DataTemplate] = field(default_factory=dict)
    #: Qualified names of the datasets and pipelines registered from users' own data configs.
    own_data: dict[str, OwnDataConfig] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {"dataset": {}, "model": {}, "pipeline": {}})

    # -- lookups ---------------------------------------------------------------------------------------
    def _lookup(self, kind: str, table: Mapping[str, T], name: str) -> T:
        key = self.aliases[kind].get(name, name)
        if key in table:
            return table[key]
        matches = [q for q in table if q.split(".", 1)[-1] == name]
        if len(matches) == 1:
            return table[matches[0]]
        shorts = [q.split(".", 1)[-1] for q in table]
        unique = {short for short in shorts if shorts.count(short) == 1}
        choices = sorted(unique | set(table) | set(self.aliases[kind]))
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
        return self.dataset(self._resolve("dataset", self.datasets, pipeline.dataset, pipeline.plugin))

    def model_of(self, pipeline: Pipeline) -> ModelSpec:
        return self.model(self._resolve("model", self.models, pipeline.model, pipeline.plugin))

    def _resolve(self, kind: str, table: Mapping[str, Any], ref: str, plugin: str) -> str:
        """The qualified name a pipeline's ``dataset``/``model`` reference means.

        A qualified reference is taken as is; a local one means the pipeline's own plugin's object
        first, then an alias (so another plugin's alias never hijacks a plugin's own names).
        """
        if "." in ref:
            return ref
        own = f"{plugin}.{ref}"
        if own in table:
            return own
        return self.aliases[kind].get(ref, own)

    def plugin_info(self, plugin_name: str) -> PluginInfo | None:
        return next((p for p in self.plugins if p.name == plugin_name), None)

    # -- lifecycle notifications -------------------------------------------------------------------------
    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin; a plugin that raises is reported, never fatal.

        Every implementation is called even when an earlier one raised (observers must not break a
        run, nor silence each other). Under ``VERTICALS_STRICT_PLUGINS=1`` the first failure raises
        :class:`~verticals.errors.PluginError` instead.
        """
        infos = {p.name: p for p in self.plugins}

        def failed(plugin: str, exc: Exception) -> None:
            info = infos.get(plugin)
            report_problem(info, f"plugin {info.label if info else plugin} hook `{hook_name}` raised "
                           f"{type(exc).__name__}: {exc}",
                           hint="fix the plugin's hook implementation; verticals carried on without it")

        for _ in call_impls(self.pm, hook_name, infos, lambda _name: kwargs, on_error=failed):
            pass


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
            expected = self.expected.__name__
            if not isinstance(obj, self.expected):
                if isinstance(obj, type) and issubclass(obj, self.expected):
                    hint = f"register an instance: register({obj.__name__}())"
                else:
                    hint = f"pass an instance of verticals.{expected}"
                report_problem(info, f"{where}: registered {type(obj).__name__} {obj!r:.60}, expected a {expected}",
                               hint=hint)
                return
            if isinstance(aliases, str):  # register(obj, aliases="x") means one alias, not one per letter
                aliases = (aliases,)
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
                if name_problem(alias) is not None:
                    report_problem(info, f"{where}: alias {alias!r} of {self.kind} '{qualified}' is not a valid name",
                                   hint="use lowercase letters, digits and underscores")
                    continue
                taken = self.registry.aliases[self.kind].get(alias)
                if taken and taken != qualified:
                    first = self.registry.plugin_info(taken.split(".", 1)[0])
                    report_problem(info, f"{where}: alias '{alias}' of {self.kind} '{qualified}' already points "
                                   f"to '{taken}' registered by plugin {first.label if first else '?'}; the "
                                   f"alias is ignored for {label}", hint="choose another alias")
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
    problem = name_problem(name)
    if problem:
        return (f"has an invalid name {name!r:.80}: it {problem}",
                f"use lowercase letters, digits and underscores, at most {NAME_MAX} characters")
    if kind == "dataset":
        if not callable(obj.loader):
            return ("has a loader that is not callable", "set loader to a function returning a polars LazyFrame")
        if not isinstance(obj.schema, Schema) or not obj.schema.columns:
            return ("has no schema", "set schema=Schema((Column(...), ...))")
        names = obj.schema.names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            return (f"declares column(s) {', '.join(dupes)} more than once", "remove the duplicate columns")
        if len(obj.schema.by_role("target")) > 1:
            return ("declares more than one target column", "keep one column with role='target'")
        if obj.split.strategy not in _STRATEGIES:
            return (f"has unknown split strategy '{obj.split.strategy}'", f"use one of {sorted(_STRATEGIES)}")
        if obj.split.strategy == "group" and not obj.schema.group:
            return ("uses the 'group' split but has no group column", "give one column role='group'")
        if obj.split.strategy == "time" and not obj.schema.time:
            return ("uses the 'time' split but has no time column", "give one column role='time'")
        if obj.split.strategy in ("leave_last", "group_time") and not (obj.schema.group and obj.schema.time):
            return (f"uses the '{obj.split.strategy}' split but lacks a group or a time column",
                    "give one column role='group' and one role='time'")
        if obj.split.gap < 0:
            return (f"has a negative split gap ({obj.split.gap})", "use a gap of 0 or more (at least the horizon)")
        if not 0 < obj.split.test_fraction < 1 or not 0 <= obj.split.valid_fraction < 1 or (
                obj.split.test_fraction + obj.split.valid_fraction >= 1):
            return ("has split fractions outside (0, 1)", "use e.g. test_fraction=0.2, valid_fraction=0.1")
    elif kind == "template":
        if not callable(obj.pipeline):
            return ("has a pipeline builder that is not callable",
                    "set pipeline to a function (config, dataset) -> Pipeline")
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


def _check_aliases(registry: Registry) -> None:
    """Drop aliases that equal another object's local name: a name must never be shadowed silently."""
    tables = {"dataset": registry.datasets, "model": registry.models, "pipeline": registry.pipelines}
    for kind, table in tables.items():
        for alias, target in list(registry.aliases[kind].items()):
            clash = sorted(q for q in table if q != target and q.split(".", 1)[1] == alias)
            if not clash:
                continue
            del registry.aliases[kind][alias]
            owner = registry.plugin_info(target.split(".", 1)[0])
            other = registry.plugin_info(clash[0].split(".", 1)[0])
            report_problem(owner, f"plugin {owner.label if owner else target} hook `register_{kind}s`: alias "
                           f"'{alias}' of {kind} '{target}' is also the name of {kind} '{clash[0]}' of plugin "
                           f"{other.label if other else '?'}; the alias is ignored",
                           hint=f"choose another alias, or use the qualified names '{target}' and '{clash[0]}'")


_lock = threading.RLock()
_registry: Registry | None = None
_building = False


def build_registry(extra: dict[str, object] | None = None, *, entry_points: bool = True) -> Registry:
    """Load the plugins and call their registration hooks (use :func:`get_registry` instead).

    ``extra`` and ``entry_points`` are passed to :func:`verticals.plugins.load_plugins`.
    """
    pm, infos = load_plugins(extra, entry_points=entry_points)
    registry = Registry(pm=pm, plugins=infos)
    plan = [("register_data_templates", "template", DataTemplate, registry.templates),
            ("register_datasets", "dataset", DatasetSpec, registry.datasets),
            ("register_models", "model", ModelSpec, registry.models),
            ("register_pipelines", "pipeline", Pipeline, registry.pipelines)]
    own: list[tuple[OwnDataConfig, DataTemplate, DatasetSpec | None]] = []
    for hook, kind, expected, table in plan:
        registrar = _Registrar(registry, hook, kind, expected, table)

        def failed(plugin: str, exc: Exception, hook: str = hook) -> None:
            if isinstance(exc, PluginError):  # strict mode, raised by the register callback
                raise exc
            info = registry.plugin_info(plugin)
            report_problem(info, f"plugin {info.label if info else plugin} hook `{hook}` raised "
                           f"{type(exc).__name__}: {exc}",
                           hint="fix the plugin's registration hook; what it registered before failing is kept")

        for _ in call_impls(pm, hook, {p.name: p for p in infos},
                            lambda plugin, r=registrar: {"register": r.for_plugin(plugin)}, on_error=failed):
            pass
        if kind == "template":
            own = _own_data(registry)
        elif kind in ("dataset", "pipeline"):
            _register_own_data(registry, registrar, kind, own)
    _check_aliases(registry)
    # Pipelines must name datasets and models that exist.
    for qualified, pipe in list(registry.pipelines.items()):
        info = registry.plugin_info(pipe.plugin)
        for what, ref, table in (("dataset", pipe.dataset, registry.datasets), ("model", pipe.model, registry.models)):
            if registry._resolve(what, table, ref, pipe.plugin) in table:
                continue
            _unregister(registry, "pipeline", qualified)
            close = difflib.get_close_matches(ref, sorted({q.split(".", 1)[1] for q in table} | set(table)), n=1)
            report_problem(info, f"plugin {info.label if info else pipe.plugin} hook `register_pipelines`: "
                           f"pipeline '{qualified}' names {what} '{ref}', which no plugin registered; "
                           f"the pipeline is skipped",
                           hint=(f"did you mean '{close[0]}'?" if close else
                                 f"register the {what} (registered: {', '.join(sorted(table)) or 'none'})"))
            break
    return registry


def _own_data(registry: Registry) -> list[tuple[OwnDataConfig, DataTemplate, DatasetSpec | None]]:
    """The users' own data configs (stored and from environment variables) with their templates."""
    import os
    from pathlib import Path

    from verticals.owndata import configured, dataset_of

    extra = [(Path(p).expanduser().absolute(), t.qualified_name) for t in registry.templates.values()
             if getattr(t, "env", "") for p in os.environ.get(t.env, "").split(os.pathsep) if p.strip()]
    found = []
    for config in configured(registry.templates, extra_paths=extra):
        template = registry.templates[config.template]
        try:
            dataset = dataset_of(config, template)
        except Exception as exc:  # a template's adjust_schema failing must not take the registry down
            info = registry.plugin_info(template.plugin)
            report_problem(info, f"data config {config.path}: {type(exc).__name__}: {exc}",
                           hint=getattr(exc, "hint", "") or "fix the config; the other pipelines work")
            continue
        found.append((config, template, dataset))
    return found


def _register_own_data(registry: Registry, registrar: _Registrar, kind: str,
                       own: list[tuple[OwnDataConfig, DataTemplate, DatasetSpec | None]]) -> None:
    """Register each own-data config's dataset, or its pipeline, as its template's plugin."""
    for config, template, dataset in own:
        qualified = f"{template.plugin}.{config.name}"
        try:
            obj = dataset if kind == "dataset" else template.pipeline(config, dataset)
        except Exception as exc:
            info = registry.plugin_info(template.plugin)
            report_problem(info, f"data config {config.path}: {type(exc).__name__}: {exc}",
                           hint=getattr(exc, "hint", "") or "fix the config; the other pipelines work")
            continue
        table = registry.datasets if kind == "dataset" else registry.pipelines
        if qualified in table:  # one of the plugin's own names: the plugin wins
            report_problem(registry.plugin_info(template.plugin),
                           f"data config {config.path}: name '{config.name}' is taken by {kind} '{qualified}'; "
                           "the config is skipped", hint="rename it and register it again")
            continue
        registrar.for_plugin(template.plugin)(obj)
        if qualified in table:
            registry.own_data[qualified] = config


def _unregister(registry: Registry, kind: str, qualified: str) -> None:
    """Remove an object accepted earlier, with its aliases and its line in ``verticals plugins``."""
    table = {"dataset": registry.datasets, "model": registry.models, "pipeline": registry.pipelines}[kind]
    table.pop(qualified, None)
    for alias, target in list(registry.aliases[kind].items()):
        if target == qualified:
            del registry.aliases[kind][alias]
    info = registry.plugin_info(qualified.split(".", 1)[0])
    if info is not None and qualified in info.registered.get(kind + "s", []):
        info.registered[kind + "s"].remove(qualified)


def get_registry() -> Registry:
    """The process-wide registry, built on first use (once per process; thread-safe)."""
    global _registry, _building
    with _lock:
        if _registry is None:
            if _building:  # a plugin asked for the registry while it is being built: would recurse
                raise PluginError("get_registry() was called while the registry was being built, from a "
                                  "plugin's import or registration hook",
                                  hint="look objects up later, inside the functions that use them")
            _building = True
            try:
                _registry = build_registry()
            finally:
                _building = False
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
