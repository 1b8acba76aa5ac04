"""Which versions of the core a plugin supports, and whether the installed core is one of them.

A plugin declares the core versions it was written for in either (or both) of two places:

* its distribution metadata: a ``Requires-Dist: verticals <specifier>`` line, i.e. the
  ``dependencies = ["verticals>=0.1,<0.2"]`` entry of its ``pyproject.toml``. Checked before the plugin
  module is imported, so a plugin made for another core is refused before its code can fail;
* its plugin module: ``VERTICALS_REQUIRES = ">=0.1,<0.2"``. Checked after import, before registration;
  it also covers plugins registered in-process (the SDK test kit), which have no distribution.

Both are PEP 440 version specifiers, compared with pre-releases of the core allowed (``0.2.0rc1`` fits
``>=0.1``, not ``<0.2``); a local build (``0.1.0+g1a2b``) compares as its public version. A plugin
that declares neither is accepted: there is nothing to check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

#: The plugin-module attribute holding a version specifier on the core.
REQUIRES_ATTR = "VERTICALS_REQUIRES"

#: The core's distribution name, as plugins name it in ``Requires-Dist``.
CORE_DISTRIBUTION = "verticals"

_NAMES_CORE = re.compile(r"^\s*verticals(?![A-Za-z0-9_.-])", re.IGNORECASE)


_ORDER = (">=", ">", "==", "===", "~=", "!=", "<=", "<")


def _display(specifier: Any) -> str:
    """A specifier set written lower bound first (``>=0.1,<0.2``), as people write ranges."""
    parts = sorted(specifier, key=lambda s: (_ORDER.index(s.operator) if s.operator in _ORDER else 9, s.version))
    return ",".join(str(s) for s in parts)


@dataclass(frozen=True)
class Requirement:
    """A plugin's declared range of core versions and where it was declared (for messages)."""

    specifier: str
    source: str

    def fits(self, version: str) -> bool:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        return SpecifierSet(self.specifier).contains(Version(version), prereleases=True)


def core_version() -> str:
    """The installed core's version (``verticals.__version__``)."""
    from verticals import __version__

    return __version__


def compatible_range(version: str) -> str:
    """The specifier a plugin made against core ``version`` should declare: the same minor series
    before 1.0 (``0.3.1`` → ``>=0.3.1,<0.4``), the same major series after (``1.4.0`` → ``>=1.4.0,<2``)."""
    from packaging.version import Version

    v = Version(version)
    upper = f"0.{v.minor + 1}" if v.major == 0 else f"{v.major + 1}"
    return f">={v.base_version},<{upper}"


def from_distribution(dist: metadata.Distribution | None) -> tuple[Requirement | None, str | None]:
    """The ``Requires-Dist: verticals ...`` of ``dist`` that applies here.

    Returns:
        ``(requirement, None)``; ``(None, None)`` when the distribution does not constrain the core;
        ``(None, problem)`` when its requirement on the core cannot be parsed.
    """
    if dist is None:
        return None, None
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as PepRequirement
    from packaging.utils import canonicalize_name

    for line in dist.requires or []:
        try:
            req = PepRequirement(line)
        except InvalidRequirement:
            if _NAMES_CORE.match(line):
                return None, f"its Requires-Dist '{line}' is not a valid requirement"
            continue
        if canonicalize_name(req.name) != CORE_DISTRIBUTION:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an optional extra's requirement, or one for another Python/platform
        if not str(req.specifier):
            return None, None
        return Requirement(_display(req.specifier), "Requires-Dist"), None
    return None, None


def from_module(plugin: object) -> tuple[Requirement | None, str | None]:
    """The ``VERTICALS_REQUIRES`` specifier of a plugin module, like :func:`from_distribution`."""
    value: Any = getattr(plugin, REQUIRES_ATTR, None)
    if value is None:
        return None, None
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if not isinstance(value, str):
        return None, f"its {REQUIRES_ATTR} is a {type(value).__name__}, not a version specifier string"
    try:
        specifier = SpecifierSet(value)
    except InvalidSpecifier:
        return None, f"its {REQUIRES_ATTR} = {value!r} is not a version specifier"
    return Requirement(_display(specifier), REQUIRES_ATTR), None


def incompatibility(requirement: Requirement | None, label: str, distribution: str,
                    version: str | None = None) -> tuple[str, str] | None:
    """``(message, fix)`` when the installed core is outside ``requirement``, else ``None``.

    Args:
        requirement: the plugin's declared range (``None``: nothing to check).
        label: the plugin as messages name it (``distribution==version``).
        distribution: the plugin's distribution name, for the fix.
        version: the core version to check (default: the installed one).
    """
    from packaging.version import InvalidVersion, Version

    core = version or core_version()
    if requirement is None:
        return None
    try:
        if Version(core).local == "unknown" or requirement.fits(core):
            return None  # "0.0.0+unknown": a core run from a source tree without metadata
    except InvalidVersion:
        return None
    return (f"plugin {label} supports verticals {requirement.specifier} (its {requirement.source}), "
            f"but verticals {core} is installed",
            f"install a release of {distribution} made for verticals {core}, or a verticals it supports: "
            f"pip install 'verticals{requirement.specifier}'")
