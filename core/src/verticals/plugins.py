"""Plugin discovery: entry points of group ``verticals``, loaded one at a time.

Built-in domain plugins are discovered exactly like third-party ones. A plugin that fails to import,
or implements a hook the contract does not define, is skipped with a warning naming
``distribution==version`` and the error, so every other command keeps working;
``VERTICALS_STRICT_PLUGINS=1`` turns that into an error (use it in CI).

Environment:
    VERTICALS_PLUGINS: comma-separated allow-list (entry-point or distribution names).
    VERTICALS_DISABLE_PLUGINS: comma-separated block-list.
    VERTICALS_STRICT_PLUGINS: ``1`` to raise instead of warn.
    VERTICALS_TRACE_HOOKS: ``1`` to print every hook call to stderr.
"""

from __future__ import annotations

import difflib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from verticals import hookspecs
from verticals.errors import PluginError

ENTRY_POINT_GROUP = "verticals"


class PluginWarning(UserWarning):
    """A plugin was skipped or misbehaved; the rest of verticals keeps working."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    return {part.strip().lower().replace("_", "-") for part in raw.split(",") if part.strip()}


def strict_mode() -> bool:
    return _env_flag("VERTICALS_STRICT_PLUGINS")


def trace_enabled() -> bool:
    return _env_flag("VERTICALS_TRACE_HOOKS")


@dataclass
class PluginInfo:
    """What ``verticals plugins`` shows about one entry point."""

    name: str
    distribution: str
    version: str
    module: str
    status: str = "loaded"  # loaded | failed | disabled
    hooks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.distribution}=={self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "hooks": self.hooks,
            "registered": self.registered,
            "errors": self.errors,
        }


def report_problem(info: PluginInfo | None, message: str, *, hint: str | None = None) -> None:
    """Record a plugin problem: raise in strict mode, else warn and keep going."""
    if info is not None:
        info.errors.append(message if not hint else f"{message} (fix: {hint})")
    if strict_mode():
        raise PluginError(message, hint=hint)
    text = message if not hint else f"{message} (fix: {hint})"
    warnings.warn(text, PluginWarning, stacklevel=3)


def _selected(ep: metadata.EntryPoint, dist_name: str) -> bool:
    names = {ep.name.lower().replace("_", "-"), dist_name.lower().replace("_", "-")}
    allow = _env_list("VERTICALS_PLUGINS")
    block = _env_list("VERTICALS_DISABLE_PLUGINS")
    if allow is not None and not (names & allow):
        return False
    return not (block is not None and names & block)


def iter_entry_points() -> Iterator[metadata.EntryPoint]:
    seen: set[tuple[str, str]] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = (ep.name, ep.value)
        if key not in seen:  # the same distribution can be visible twice on sys.path
            seen.add(key)
            yield ep


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    known = {name for name in dir(pm.hook) if not name.startswith("_")}
    found = []
    for attr in dir(plugin):
        if attr.startswith("_"):
            continue
        try:
            value = getattr(plugin, attr)
        except Exception:  # pragma: no cover - defensive against odd module attributes
            continue
        opts = getattr(value, f"{hookspecs.PROJECT}_impl", None)
        if opts is not None and attr not in known and not opts.get("specname"):
            found.append(attr)
    return found


def load_plugins(
    extra: dict[str, object] | None = None, *, entry_points: bool = True
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Create the plugin manager and load every selected entry point, one at a time.

    Args:
        extra: plugins to register in-process, by name (the plugin SDK's test kit uses this to try a
            plugin without installing it). They are checked like entry points.
        entry_points: also load the installed entry points of group ``verticals``.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    for name, plugin in (extra or {}).items():
        info = PluginInfo(name=name, distribution=name, version="in-process", module=repr(plugin)[:80])
        infos.append(info)
        unknown = _unknown_hooks(pm, plugin)
        if unknown:
            info.status = "failed"
            report_problem(info, f"plugin {name} implements unknown hook(s) {', '.join(unknown)}",
                           hint="check the names against verticals.hookspecs")
            continue
        pm.register(plugin, name=name)
        info.hooks = sorted(_hook_names(pm, name))
    for ep in (iter_entry_points() if entry_points else ()):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else ep.name
        version = dist.version if dist is not None else "unknown"
        info = PluginInfo(name=ep.name, distribution=dist_name, version=version, module=ep.value)
        infos.append(info)
        if not _selected(ep, dist_name):
            info.status = "disabled"
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the tool down
            info.status = "failed"
            report_problem(
                info,
                f"plugin {info.label} (entry point '{ep.name} = {ep.value}') failed to import: "
                f"{type(exc).__name__}: {exc}",
                hint=f"fix or reinstall {dist_name}, or disable it with VERTICALS_DISABLE_PLUGINS={ep.name}",
            )
            continue
        unknown = _unknown_hooks(pm, plugin)
        if unknown:
            info.status = "failed"
            known = sorted(n for n in dir(pm.hook) if not n.startswith("_"))
            for name in unknown:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"rename it to '{close[0]}'" if close else "remove it; known hooks: " + ", ".join(known)
                report_problem(info, f"plugin {info.label} implements unknown hook '{name}'", hint=hint)
            continue
        if pm.has_plugin(ep.name):
            info.status = "failed"
            other = next((i for i in infos if i.name == ep.name and i is not info), None)
            report_problem(
                info,
                f"plugin {info.label} uses the entry-point name '{ep.name}' already taken by "
                f"{other.label if other else 'another plugin'}",
                hint="give the entry point a unique name in the group 'verticals'",
            )
            continue
        pm.register(plugin, name=ep.name)
        info.hooks = sorted(impl_name for impl_name in _hook_names(pm, ep.name))
    return pm, infos


def _hook_names(pm: pluggy.PluginManager, plugin_name: str) -> Iterator[str]:
    plugin = pm.get_plugin(plugin_name)
    for caller in pm.get_hookcallers(plugin) or []:
        yield caller.name


def call_impls(pm: pluggy.PluginManager, hook_name: str, plugin_names: dict[str, PluginInfo],
               make_kwargs: Callable[[str], dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Call each implementation of ``hook_name`` separately, yielding ``(plugin name, result)``.

    Calling implementations one by one lets the caller attribute what each plugin does (registration
    callbacks that know their plugin) and keeps one failing plugin from stopping the others.
    """
    caller = getattr(pm.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):  # registration order
        kwargs = make_kwargs(impl.plugin_name)
        kwargs = {k: v for k, v in kwargs.items() if k in impl.argnames}
        started = time.perf_counter()
        if trace_enabled():
            print(f"[verticals trace] {hook_name} -> {impl.plugin_name}({', '.join(kwargs)})", file=sys.stderr)
        result = impl.function(**kwargs)
        if trace_enabled():
            ms = (time.perf_counter() - started) * 1000
            print(f"[verticals trace] {hook_name} <- {impl.plugin_name} ({ms:.1f} ms)", file=sys.stderr)
        yield impl.plugin_name, result
