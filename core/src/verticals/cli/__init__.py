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
    from verticals.cli import catalog, models, scaffold, score, train

    root = _new_app()
    for module in (catalog, train, models, score, scaffold):
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


def _usage_error(exc: Any, as_json: bool = False) -> int:
    """Print a click usage error as one line (help for a bare group) and return its exit code."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `verticals` or `verticals models` alone
        exc.show()
        return int(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    message = " ".join(str(exc.format_message()).split())
    where = ctx.command_path if ctx is not None else "verticals"
    _fail(message, f"see '{where} --help'", int(exc.exit_code), as_json)
    return int(exc.exit_code)


def _fail(message: str, fix: str | None, code: int, as_json: bool) -> None:
    """Report an error: one line on stderr, or the JSON object on stdout under ``--json``."""
    if as_json:
        from verticals.cli.output import error_payload, print_json

        print_json(error_payload(message, fix, code))
        return
    typer.echo(f"error: {message}" + (f" (fix: {fix})" if fix else ""), err=True)


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
    from verticals.cli.output import FILESYSTEM_EXIT, json_requested, os_error

    debug = "--debug" in args or os.environ.get("VERTICALS_DEBUG") == "1"
    as_json = json_requested(args)
    try:
        app = build_app()
        # standalone_mode=False: errors come back here to be printed as one line. In that mode
        # click returns (not raises) the code of a typer.Exit, so it is passed on below.
        result = app(args=args, prog_name="verticals", standalone_mode=False, max_content_width=_help_width())
    except VerticalsError as exc:
        if debug:
            raise
        _fail(exc.message, exc.hint, exc.exit_code, as_json)
        raise SystemExit(exc.exit_code) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        _fail("aborted", None, 130, as_json)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        _fail("interrupted", "rerun the command; scoring resumes from the parts already written", 130, as_json)
        raise SystemExit(130) from None
    except OSError as exc:  # a path the user chose cannot be read or written: not a bug
        if debug:
            raise
        full = _disk_full(exc)
        message, fix = (full, DISK_FULL_FIX) if full is not None else os_error(exc)
        _fail(message, fix, FILESYSTEM_EXIT, as_json)
        raise SystemExit(FILESYSTEM_EXIT) from None
    except Exception as exc:
        if _is_click_error(exc):
            raise SystemExit(_usage_error(exc, as_json)) from None
        if debug:
            raise
        full = _disk_full(exc)  # pyarrow reports a full disk as its own error type
        if full is not None:
            _fail(full, DISK_FULL_FIX, FILESYSTEM_EXIT, as_json)
            raise SystemExit(FILESYSTEM_EXIT) from None
        if as_json:
            _fail(f"{type(exc).__name__}: {exc}", "run 'verticals --debug ...' for the traceback", 1, True)
        else:  # a bug: its class name helps the report
            typer.echo(f"error: {type(exc).__name__}: {exc} (run 'verticals --debug ...' for the traceback)",
                       err=True)
        raise SystemExit(1) from None
    if isinstance(result, int) and not isinstance(result, bool) and result != 0:
        if result == 130:  # Typer turns Ctrl-C into Exit(130) without a word
            _fail("interrupted", "rerun the command; scoring resumes from the parts already written", 130, as_json)
        raise SystemExit(result)


def _help_width() -> int:
    """Help text as wide as the terminal (click stops at 80 columns by default)."""
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns)


DISK_FULL_FIX = "free space or write elsewhere, then run the same command again"


def _disk_full(exc: BaseException) -> str | None:
    """A one-line message for a full disk or an exceeded quota anywhere in ``exc``'s chain, else None."""
    import errno

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {cause.filename}" if cause.filename else ""
            return f"no space left on the device{where}; nothing was published"
        if isinstance(cause, OSError) and "No space left on device" in str(cause):  # pyarrow's IOError text
            return "no space left on the device; nothing was published"
        cause = cause.__cause__ or cause.__context__
    return None
