"""The ``verticals`` command line.

Each command group lives in its own module with a ``register(app)`` function; plugins add commands
through the ``register_commands`` hook. Heavy libraries are imported inside the command functions so
``verticals --help`` stays fast (a test checks that torch, onnxruntime and prefect stay unimported).

Help is rendered by Typer's plain (click-style) formatter: Typer 0.29's rich formatter prints
``<bool>`` next to every flag, as if ``--json`` took a value, and the plain one is also quicker.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated, Any

import typer

from verticals.errors import VerticalsError

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from verticals import __version__

        typer.echo(f"verticals {__version__}")
        raise typer.Exit()


def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug or os.environ.get("VERTICALS_DEBUG") == "1"


def _new_app() -> typer.Typer:
    root = typer.Typer(
        name="verticals",
        help="Build, train, register and batch-score vertical AI pipelines.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
    )
    root.callback()(_root)
    return root


app = _new_app()
"""The root command; :func:`main` replaces it with a fresh one holding the core and plugin commands."""


def build_app() -> typer.Typer:
    """A root command with the core commands and those the plugins add.

    Built anew for each :func:`main` call, so a process that runs several commands (tests, a
    notebook) never registers a command twice or keeps a plugin's commands after the registry changed.
    """
    from verticals.cli import catalog, data, models, scaffold, score, train

    root = _new_app()
    for module in (catalog, train, models, score, scaffold, data):
        module.register(root)
    _plugin_commands(root)
    return root


def _install_commands() -> None:
    """Rebuild :data:`app` with every command (kept for callers of the first CLI layout)."""
    global app
    app = build_app()


def _plugin_commands(root: typer.Typer) -> None:
    """Let plugins add commands; a plugin whose hook fails is reported, the CLI keeps working."""
    from verticals.plugins import call_impls, report_problem
    from verticals.registry import get_registry

    registry = get_registry()  # a PluginError (strict mode) reaches main(): one line, exit code 3

    def failed(plugin: str, exc: Exception) -> None:
        info = registry.plugin_info(plugin)
        report_problem(info, f"plugin {info.label if info else plugin} hook `register_commands` raised "
                       f"{type(exc).__name__}: {exc}",
                       hint="fix the plugin's register_commands implementation")

    for _ in call_impls(registry.pm, "register_commands", {p.name: p for p in registry.plugins},
                        lambda _name: {"app": root}, on_error=failed):
        pass


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def _is_click_error(exc: BaseException) -> bool:
    # Typer >= 0.2x raises the exceptions of its vendored click (typer._click), which are not
    # click.ClickException; match both by class name instead of importing a private module.
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def _usage_error(exc: Any) -> int:
    """Print a click usage error as one line (help for a bare group) and return its exit code."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `verticals` or `verticals models` alone
        exc.show()
        return int(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    message = " ".join(str(exc.format_message()).split())
    where = ctx.command_path if ctx is not None else "verticals"
    typer.echo(f"error: {message} (fix: see '{where} --help')", err=True)
    return int(exc.exit_code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors, exit codes by kind, tracebacks only with ``--debug``."""
    previous = warnings.formatwarning
    warnings.formatwarning = _format_warning  # plugin warnings as one line: "warning: ..."
    try:
        _main(sys.argv[1:] if argv is None else argv)
    finally:  # leave the process as it was when main() runs in-process (tests, notebooks)
        warnings.formatwarning = previous


def _main(args: list[str]) -> None:
    global app
    debug = "--debug" in args or os.environ.get("VERTICALS_DEBUG") == "1"
    try:
        app = build_app()
        # standalone_mode=False: errors come back here to be printed as one line. In that mode
        # click returns (not raises) the code of a typer.Exit, so it is passed on below.
        result = app(args=args, prog_name="verticals", standalone_mode=False)
    except VerticalsError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        typer.echo("aborted", err=True)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130) from None
    except Exception as exc:
        if _is_click_error(exc):
            raise SystemExit(_usage_error(exc)) from None
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (run 'verticals --debug ...' for the traceback)",
                   err=True)
        raise SystemExit(1) from None
    if isinstance(result, int) and not isinstance(result, bool) and result != 0:
        raise SystemExit(result)
