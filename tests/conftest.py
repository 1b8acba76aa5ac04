"""Session-wide: ``docs/reliability.md`` is checked against what the reliability tests observed."""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import reliability_log

    if not reliability_log.complete():  # a partial run (-k, one file): nothing to compare
        return
    text = reliability_log.render()
    current = reliability_log.DOC.read_text(encoding="utf-8") if reliability_log.DOC.is_file() else ""
    if text == current:
        return
    if os.environ.get("VERTICALS_WRITE_RELIABILITY") == "1":
        reliability_log.DOC.write_text(text, encoding="utf-8")
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = ("docs/reliability.md does not match what the reliability tests observed "
               "(fix: rerun with VERTICALS_WRITE_RELIABILITY=1 and commit the file)")
    if reporter is not None:
        reporter.write_line(f"FAILED {message}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
