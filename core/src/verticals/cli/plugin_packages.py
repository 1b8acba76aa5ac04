"""``verticals plugins`` as a group: the listing, ``install`` and ``uninstall``.

``verticals plugins`` alone (or with ``--json``) lists the installed plugins; ``install`` and
``uninstall`` wrap pip for the interpreter running verticals (see :mod:`verticals.installer`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _describe(plugin: dict[str, Any]) -> str:
    registered = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in (plugin.get("registered") or {}).items())
    text = f"plugin {plugin['name']} ({plugin.get('status', 'unknown')})"
    if registered:
        text += f": {registered}"
    return text


def _report(change: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(change.to_dict(), indent=2, default=str))
        return
    typer.echo(f"{change.action} {change.distribution}" + (f"=={change.version}" if change.version else ""))
    for plugin in change.plugins:
        if change.action == "installed":
            typer.echo(f"  {_describe(plugin)}")
            for error in plugin.get("errors") or []:
                typer.echo(f"  warning: {error}", err=True)
        else:
            typer.echo(f"  plugin {plugin['name']} removed")


def install(
    target: Annotated[str, typer.Argument(help="A plugin's project folder, a .whl file, or a requirement "
                                               "such as verticals-telco==0.2 (from the package index).")],
    editable: Annotated[bool, typer.Option("--editable", "-e", help="Install a folder in editable mode.")] = False,
    upgrade: Annotated[bool, typer.Option("--upgrade", "-U", help="Upgrade it if it is already installed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Install a plugin into the Python that runs verticals (pip), then list what it registers."""
    import importlib

    from verticals import installer
    from verticals.registry import reset_registry

    try:
        change = installer.install(target, editable=editable, upgrade=upgrade)
    finally:
        importlib.invalidate_caches()
        reset_registry()
    _report(change, as_json)


def uninstall(
    name: Annotated[str, typer.Argument(help="Plugin name (as `verticals plugins` shows it) or distribution name.")],
    as_json: JsonOpt = False,
) -> None:
    """Uninstall a plugin's distribution from the Python that runs verticals (pip)."""
    import importlib

    from verticals import installer
    from verticals.registry import reset_registry

    try:
        change = installer.uninstall(name)
    finally:
        importlib.invalidate_caches()
        reset_registry()
    _report(change, as_json)


def register(app: typer.Typer, listing: Callable[..., None]) -> None:
    """Add the ``plugins`` group; ``listing(as_json=...)`` runs when no subcommand is given."""
    group = typer.Typer(name="plugins", invoke_without_command=True, no_args_is_help=False,
                        rich_markup_mode=None)

    @group.callback(invoke_without_command=True, help=listing.__doc__)
    def _plugins(ctx: typer.Context, as_json: JsonOpt = False) -> None:
        if ctx.invoked_subcommand is None:
            listing(as_json=as_json)

    group.command("install")(install)
    group.command("uninstall")(uninstall)
    app.add_typer(group, name="plugins")
