"""Plugin discovery: entry points of group ``verticals``, loaded one at a time.

Built-in domain plugins are discovered exactly like third-party ones. A plugin made for other versions
of the core (its ``Requires-Dist: verticals ...`` or its module's ``VERTICALS_REQUIRES``; see
:mod:`verticals.compat`) is refused with the versions it supports. A plugin that fails to import,
implements a hook the contract does not define (with a did-you-mean), takes arguments its hook does
not pass, or reuses another plugin's name, is skipped with a warning naming ``distribution==version``
and the error, so every other command keeps working; ``VERTICALS_STRICT_PLUGINS=1`` turns that into
an error (use it in CI). These checks run before pluggy registers the plugin, so the problems surface
as one-line messages rather than pluggy's multi-line validation errors.

Environment:
    VERTICALS_PLUGINS: comma-separated allow-list (entry-point or distribution names).
    VERTICALS_DISABLE_PLUGINS: comma-separated block-list.
    VERTICALS_STRICT_PLUGINS: ``1`` to raise instead of warn.
    VERTICALS_TRACE_HOOKS: ``1`` to print every hook call to stderr.
"""

from __future__ import annotations

import difflib
import inspect
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from verticals import compat, hookspecs
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
    status: str = "loaded"  # loaded | failed | incompatible | disabled
    requires: list[str] = field(default_factory=list)  # declared core versions, e.g. ">=0.1,<0.2 (Requires-Dist)"
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
            "requires": self.requires,
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


_IMPL_ATTR = f"{hookspecs.PROJECT}_impl"


def known_hooks(pm: pluggy.PluginManager) -> list[str]:
    """Names of the hooks the contract defines (those in :mod:`verticals.hookspecs`)."""
    return sorted(name for name in dir(pm.hook) if not name.startswith("_"))


def _spec_args(hook: str) -> list[str]:
    return list(inspect.signature(getattr(hookspecs, hook)).parameters)


def _required_args(function: Callable[..., Any]) -> list[str]:
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return []
    return [p.name for p in params
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def check_plugin(pm: pluggy.PluginManager, plugin: object,
                 label: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """What in ``plugin`` breaks the contract, before it is registered.

    Returns ``(errors, notes)``, each a list of ``(problem, fix)``. Errors make the plugin unusable
    (an unknown hook, arguments the hook does not pass, a hook wrapper); pluggy would otherwise accept
    an unknown hook silently and fail later with a multi-line message. Notes are mistakes that leave
    the plugin usable, such as a function named like a hook but not decorated, which is never called.
    """
    known = known_hooks(pm)
    errors: list[tuple[str, str]] = []
    notes: list[tuple[str, str]] = []
    for attr in dir(plugin):
        if attr.startswith("_"):
            continue
        try:
            value = getattr(plugin, attr)
        except Exception:  # pragma: no cover - defensive against odd module attributes
            continue
        opts = getattr(value, _IMPL_ATTR, None)
        if not isinstance(opts, dict):
            if attr in known and inspect.isroutine(value):
                notes.append((f"plugin {label} defines `{attr}` without @hookimpl, so verticals never calls it",
                              "decorate it with @verticals.hookimpl"))
            continue
        hook = opts.get("specname") or attr
        if hook not in known:
            if opts.get("optionalhook"):  # written for a newer verticals: allowed, never called
                continue
            close = difflib.get_close_matches(hook, known, n=1)
            errors.append((f"plugin {label} implements unknown hook '{hook}'"
                           + (f"; did you mean '{close[0]}'?" if close else ""),
                           f"rename it to '{close[0]}'" if close else "remove it; known hooks: " + ", ".join(known)))
            continue
        if opts.get("hookwrapper") or opts.get("wrapper"):
            errors.append((f"plugin {label} hook `{hook}` is a hook wrapper, which verticals never calls",
                           "remove hookwrapper=/wrapper= from its @hookimpl"))
            continue
        allowed = _spec_args(hook)
        extra = [name for name in _required_args(value) if name not in allowed]
        if extra:
            errors.append((f"plugin {label} hook `{hook}` takes argument(s) {', '.join(extra)} "
                           f"that the hook does not pass",
                           f"name the arguments like the hookspec: {hook}({', '.join(allowed)})"))
    return errors, notes


def _supports_core(info: PluginInfo, found: tuple[compat.Requirement | None, str | None]) -> bool:
    """Record a plugin's declared core versions; refuse it (``False``) when the core is not among them."""
    requirement, problem = found
    if problem is not None:
        info.status = "failed"
        report_problem(info, f"plugin {info.label} declares the core versions it supports wrongly: {problem}",
                       hint="use a PEP 440 specifier such as 'verticals>=0.1,<0.2' (Requires-Dist) or "
                            f"{compat.REQUIRES_ATTR} = '>=0.1,<0.2' (plugin module)")
        return False
    if requirement is None:
        return True
    info.requires.append(f"{requirement.specifier} ({requirement.source})")
    refused = compat.incompatibility(requirement, info.label, info.distribution)
    if refused is not None:
        info.status = "incompatible"
        report_problem(info, refused[0], hint=refused[1])
        return False
    return True


def _register(pm: pluggy.PluginManager, info: PluginInfo, plugin: object, infos: list[PluginInfo]) -> None:
    """Check ``plugin`` and register it under ``info.name``; report problems instead of raising."""
    from verticals.names import NAME_MAX, PLUGIN, name_problem

    problem = name_problem(info.name, pattern=PLUGIN)
    if problem:  # the plugin name prefixes every name it registers, and those become folder names
        info.status = "failed"
        report_problem(info, f"plugin {info.label} has an unusable plugin name {info.name!r:.80}: it {problem}",
                       hint=f"name the entry point with letters, digits, '_' or '-' (at most {NAME_MAX})")
        return
    if not _supports_core(info, compat.from_module(plugin)):
        return
    errors, notes = check_plugin(pm, plugin, info.label)
    for message, hint in notes:
        report_problem(info, message, hint=hint)
    if errors:
        info.status = "failed"
        for message, hint in errors:
            report_problem(info, message, hint=hint)
        return
    if pm.has_plugin(info.name):
        info.status = "failed"
        first = next((i for i in infos if i.name == info.name and i.status == "loaded" and i is not info), None)
        report_problem(
            info,
            f"plugin {info.label} uses the plugin name '{info.name}' already taken by "
            f"{first.label if first else 'another plugin'}",
            hint="give the entry point a unique name in the group 'verticals'",
        )
        return
    try:
        pm.register(plugin, name=info.name)
    except (pluggy.PluginValidationError, ValueError) as exc:  # e.g. one module under two names
        info.status = "failed"
        report_problem(info, f"plugin {info.label} could not be registered: {' '.join(str(exc).split())}",
                       hint=f"fix {info.distribution}'s hook implementations or its entry points")
        return
    info.hooks = sorted(_hook_names(pm, info.name))


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
        _register(pm, info, plugin, infos)
    for ep in (iter_entry_points() if entry_points else ()):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else ep.name
        version = dist.version if dist is not None else "unknown"
        info = PluginInfo(name=ep.name, distribution=dist_name, version=version, module=ep.value)
        infos.append(info)
        if not _selected(ep, dist_name):
            info.status = "disabled"
            continue
        if not _supports_core(info, compat.from_distribution(dist)):
            continue  # refused before importing code written for another core
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
        _register(pm, info, plugin, infos)
    if entry_points:
        _check_allow_list(infos)
    return pm, infos


def _check_allow_list(infos: list[PluginInfo]) -> None:
    """Warn about names in ``VERTICALS_PLUGINS`` that match no installed plugin (a typo disables all)."""
    allow = _env_list("VERTICALS_PLUGINS")
    if not allow:
        return
    present = {n.lower().replace("_", "-") for i in infos for n in (i.name, i.distribution)}
    for name in sorted(allow - present):
        close = difflib.get_close_matches(name, sorted(present), n=1)
        report_problem(None, f"VERTICALS_PLUGINS names '{name}', which matches no installed plugin",
                       hint=f"did you mean '{close[0]}'?" if close else "run 'verticals plugins' to list them")


def _hook_names(pm: pluggy.PluginManager, plugin_name: str) -> Iterator[str]:
    plugin = pm.get_plugin(plugin_name)
    for caller in pm.get_hookcallers(plugin) or []:
        yield caller.name


def call_impls(pm: pluggy.PluginManager, hook_name: str, plugin_names: dict[str, PluginInfo],
               make_kwargs: Callable[[str], dict[str, Any]],
               on_error: Callable[[str, Exception], None] | None = None) -> Iterator[tuple[str, Any]]:
    """Call each implementation of ``hook_name`` separately, yielding ``(plugin name, result)``.

    Calling implementations one by one lets the caller attribute what each plugin does (registration
    callbacks that know their plugin) and keeps one failing plugin from stopping the others: with
    ``on_error``, an exception an implementation raises is handed to ``on_error(plugin name, error)``
    and the next implementation is still called (a generator cannot resume after raising, so the
    caller cannot do this itself). Without it, the exception propagates. Implementations run in
    pluggy's order: ``tryfirst`` ones first, then the most recently registered first.
    """
    caller = getattr(pm.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):
        kwargs = make_kwargs(impl.plugin_name)
        kwargs = {k: v for k, v in kwargs.items() if k in impl.argnames}
        started = time.perf_counter()
        if trace_enabled():
            print(f"[verticals trace] {hook_name} -> {impl.plugin_name}({', '.join(kwargs)})", file=sys.stderr)
        try:
            result = impl.function(**kwargs)
        except Exception as exc:
            if trace_enabled():
                print(f"[verticals trace] {hook_name} <- {impl.plugin_name} raised {type(exc).__name__}",
                      file=sys.stderr)
            if on_error is None:
                raise
            on_error(impl.plugin_name, exc)
            continue
        if trace_enabled():
            ms = (time.perf_counter() - started) * 1000
            print(f"[verticals trace] {hook_name} <- {impl.plugin_name} ({ms:.1f} ms)", file=sys.stderr)
        yield impl.plugin_name, result
