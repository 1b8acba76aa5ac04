"""``verticals plugins install|uninstall``: pip for the interpreter that runs verticals.

A plugin is found through the entry points of the Python that runs ``verticals``; a ``pip`` first on
``PATH`` may belong to another one. These functions run ``python -m pip`` with ``sys.executable``,
then ask a fresh process which plugins the distribution provides (the running process cannot see a
distribution installed after it started: an editable install adds an import hook at start-up).

A local folder is built with the build backend already installed when it satisfies the folder's
``[build-system] requires`` (no index needed: it works offline); otherwise pip builds it in an
isolated environment, as usual.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from verticals.errors import NotFoundError, UserError, VerticalsError

CORE = "verticals"
_NAME_END = re.compile(r"[\s<>=!~;@\[(]")


def normalise(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class PackageChange:
    """What an install or uninstall did: the distribution and the plugins it provides (or provided)."""

    action: str
    distribution: str
    version: str | None
    plugins: list[dict[str, Any]] = field(default_factory=list)
    target: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "distribution": self.distribution, "version": self.version,
                "target": self.target, "plugins": self.plugins}


def _pip(args: list[str], what: str) -> None:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode == 0:
        return
    lines = [line.strip() for line in (proc.stderr + "\n" + proc.stdout).splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    reason = errors[0] if errors else (lines[-1] if lines else f"exit code {proc.returncode}")
    raise UserError(f"pip could not {what}: {reason}",
                    hint=f"run `{sys.executable} -m pip {' '.join(args)}` to see pip's full output")


def _requirement_met(text: str) -> bool:
    """Whether an installed distribution satisfies the requirement ``text`` (name and version bounds)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging comes with setuptools and most stacks
        return False
    try:
        req = Requirement(text)
        version = metadata.version(req.name)
    except Exception:  # unparsable or not installed
        return False
    return req.specifier.contains(version, prereleases=True)


def _local_project(path: Path) -> tuple[str, list[str]]:
    """(distribution name, pip options) of a local folder or built file."""
    if path.is_file():
        if path.suffix == ".whl" or path.name.endswith((".tar.gz", ".zip")):
            return path.name.split("-")[0], []
        raise UserError(f"{path} is neither a project folder nor a wheel or sdist",
                        hint="pass the plugin's folder (with pyproject.toml), a .whl, or a name on the package index")
    pyproject = path / "pyproject.toml"
    if not pyproject.is_file():
        raise UserError(f"{path} has no pyproject.toml", hint="pass the plugin's project folder, e.g. verticals-telco/")
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"cannot read {pyproject}: {exc}", hint="fix the file's TOML syntax") from None
    name = data.get("project", {}).get("name")
    if not name:
        raise UserError(f"{pyproject} has no [project] name", hint="add name = \"verticals-...\" under [project]")
    requires = data.get("build-system", {}).get("requires", ["setuptools>=40.8.0"])
    offline = requires and all(_requirement_met(r) for r in requires)
    return name, ["--no-build-isolation"] if offline else []


def _looks_like_path(target: str) -> bool:
    return target.startswith((".", "/", "~")) or "/" in target or target.endswith((".whl", ".tar.gz", ".zip"))


def installed_plugins(distribution: str) -> list[dict[str, Any]]:
    """The plugins of ``distribution`` as a fresh ``verticals plugins --json`` lists them."""
    proc = subprocess.run([sys.executable, "-m", "verticals.cli", "plugins", "--json"], capture_output=True,
                          text=True)
    try:
        listed = json.loads(proc.stdout)
    except ValueError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise VerticalsError(f"`verticals plugins` failed after the change: {last}",
                             hint="run `verticals plugins` to see the problem") from None
    return [p for p in listed if normalise(p.get("distribution") or "") == normalise(distribution)]


def install(target: str, *, editable: bool = False, upgrade: bool = False) -> PackageChange:
    """``pip install`` a plugin (a folder, a wheel, or a requirement such as ``verticals-telco==0.2``).

    Raises :class:`UserError` when pip fails (naming pip's own error line) or when the installed
    distribution registers no plugin in the entry-point group ``verticals``.
    """
    path = Path(target).expanduser()
    options: list[str] = []
    if path.exists():
        name, options = _local_project(path)
        spec = str(path.absolute())
    elif _looks_like_path(target):
        raise NotFoundError(f"no such folder or file: {target}",
                            hint="pass the plugin's project folder, a .whl file, or a distribution name")
    else:
        if editable:
            raise UserError("--editable needs a local folder", hint="drop --editable to install from the index")
        name, spec = _NAME_END.split(target.strip(), maxsplit=1)[0], target.strip()
    if normalise(name) == CORE:
        raise UserError("verticals itself is not a plugin", hint="upgrade it with pip, not `verticals plugins install`")
    args = ["install", "-q", *options, *(["--upgrade"] if upgrade else []), *(["-e", spec] if editable else [spec])]
    _pip(args, f"install {target}")
    try:
        version = metadata.distribution(name).version
    except metadata.PackageNotFoundError:  # pragma: no cover - installed where this process cannot see yet
        version = None
    plugins = installed_plugins(name)
    if not plugins:
        raise UserError(f"installed {name}, but it provides no verticals plugin (no entry point in group "
                        "'verticals')", hint=f"add [project.entry-points.verticals] to its pyproject.toml, or "
                                             f"remove it with `verticals plugins uninstall {name}`")
    version = version or plugins[0].get("version")
    return PackageChange("installed", name, version, plugins, target=target)


def _distribution_of(name: str) -> str:
    """The installed distribution a plugin name or distribution name refers to."""
    for ep in metadata.entry_points(group="verticals"):
        if ep.dist is not None and (ep.name == name or normalise(ep.dist.metadata["Name"]) == normalise(name)):
            return ep.dist.metadata["Name"]
    for candidate in (name, f"verticals-{name}"):
        try:
            dist = metadata.distribution(candidate)
        except metadata.PackageNotFoundError:
            continue
        raise UserError(f"{dist.metadata['Name']} is installed but is not a verticals plugin",
                        hint=f"remove it with `{sys.executable} -m pip uninstall {dist.metadata['Name']}` if you mean to")
    known = sorted({ep.name for ep in metadata.entry_points(group="verticals")})
    raise NotFoundError(f"no installed plugin or distribution named {name!r}; plugins: {', '.join(known) or 'none'}",
                        hint="see `verticals plugins`")


def uninstall(name: str) -> PackageChange:
    """``pip uninstall`` the distribution of the plugin ``name`` (a plugin or a distribution name)."""
    if normalise(name) == CORE:
        raise UserError("verticals itself is not a plugin", hint=f"remove it with `{sys.executable} -m pip uninstall verticals`")
    dist = _distribution_of(name)
    if normalise(dist) == CORE:
        raise UserError("verticals itself is not a plugin", hint=f"remove it with `{sys.executable} -m pip uninstall verticals`")
    version = metadata.distribution(dist).version  # read now: the files are gone after pip
    plugins = [{"name": ep.name, "distribution": dist, "version": version}
               for ep in metadata.entry_points(group="verticals")
               if ep.dist is not None and normalise(ep.dist.metadata["Name"]) == normalise(dist)]
    _pip(["uninstall", "-y", "-q", dist], f"uninstall {dist}")
    left = installed_plugins(dist)
    if left:
        raise VerticalsError(f"{dist} still provides plugin(s) {', '.join(p['name'] for p in left)} after pip "
                             "uninstall", hint="another copy is on the path; see `verticals plugins --json`")
    return PackageChange("uninstalled", dist, version, plugins, target=name)
