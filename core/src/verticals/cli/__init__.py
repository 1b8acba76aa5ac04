"""The ``verticals`` command line.

Each command group lives in its own module with a ``register(app)`` function; plugins add commands
through the ``register_commands`` hook. Heavy libraries are imported inside the command functions so
``verticals --help`` stays fast (a test checks that torch, onnxruntime and prefect stay unimported).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated

import typer

from verticals.errors import VerticalsError

app = typer.Typer(
    name="verticals",
    help="Build, train, register and batch-score vertical AI pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from verticals import __version__

        typer.echo(f"verticals {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug or os.environ.get("VERTICALS_DEBUG") == "1"


def _install_commands() -> None:
    from verticals.cli import catalog, models, score, train

    for module in (catalog, train, models, score):
        module.register(app)
    _plugin_commands()


def _plugin_commands() -> None:
    """Let plugins add commands; a plugin whose hook fails is reported, the CLI keeps working."""
    from verticals.plugins import call_impls, report_problem
    from verticals.registry import get_registry

    try:
        registry = get_registry()
    except VerticalsError as exc:  # strict mode
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from exc
    calls = call_impls(registry.pm, "register_commands", {p.name: p for p in registry.plugins},
                       lambda _name: {"app": app})
    while True:
        try:
            next(calls)
        except StopIteration:
            break
        except Exception as exc:
            report_problem(None, f"hook `register_commands` raised {type(exc).__name__}: {exc}",
                           hint="fix the plugin's register_commands implementation")


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors, exit codes by kind, tracebacks only with ``--debug``."""
    warnings.formatwarning = _format_warning
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("VERTICALS_DEBUG") == "1"
    try:
        _install_commands()
        app(args=args, prog_name="verticals", standalone_mode=False)
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
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        raise SystemExit(1) from None
