"""Prefect's console logging for the ``verticals`` commands: no traceback for a user-facing error.

When a flow fails with a :class:`~verticals.errors.VerticalsError` (an existing output, bad data, a
parity failure), Prefect logs "Encountered exception during execution" with the whole traceback to
the console, and then the CLI prints the one-line error with its fix. The traceback helps nobody
there: it still reaches the Prefect UI (the API log handler is untouched) and ``--debug`` shows it,
but the console gets the one line only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from verticals.errors import VerticalsError


def _user_error(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    while exc is not None:
        if isinstance(exc, VerticalsError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _OneLine(logging.Formatter):
    """Wraps a handler's formatter: a record carrying a VerticalsError is formatted without traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if not _user_error(record):
            return self.inner.format(record)
        exc = record.exc_info[1] if record.exc_info else None
        copy = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        text = self.inner.format(copy)
        if exc is not None and str(exc) not in text:
            text = f"{text}: {exc}"
        return text

    def __getattr__(self, name: str) -> Any:  # anything else the handler asks its formatter
        return getattr(self.inner, name)


def _console_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    found = []
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler).__name__ == "PrefectConsoleHandler" and handler not in found:
                found.append(handler)
    return found


def quiet_user_errors(debug: bool = False) -> None:
    """Drop tracebacks of user-facing errors from Prefect's console output (call after importing Prefect)."""
    if debug:
        return
    for handler in _console_handlers():
        if not isinstance(handler.formatter, _OneLine):
            handler.setFormatter(_OneLine(handler.formatter))


@contextlib.contextmanager
def flushed(timeout: float = 10.0) -> Iterator[None]:
    """Send the logs and events Prefect still holds before the command prints its result or error.

    Otherwise Prefect flushes them at interpreter exit and prints "EventsWorker - Still processing
    items" after the command's own last line.
    """
    try:
        yield
    finally:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for service in (APILogWorker, EventsWorker):
            # Its own progress note ("Still processing items") is what this drain is meant to spare.
            progress = logging.getLogger(service.__name__)
            level = progress.level
            progress.setLevel(logging.ERROR)
            try:
                with contextlib.suppress(Exception):
                    service.drain_all(timeout=timeout)
            finally:
                progress.setLevel(level)
