"""Paths in flow parameters: absolute, with ``{date}`` filled in per run."""

from __future__ import annotations

from pathlib import Path


def dated(text: str) -> Path:
    """``text`` as an absolute path, ``{date}`` replaced by the flow run's scheduled date (UTC, ``YYYY-MM-DD``).

    A scheduled score run writes ``/data/scores/{date}`` into a folder per day; a retry of that run keeps
    its scheduled date, so it resumes into the same folder, and the monitor run scheduled the same day
    reads it back.
    """
    if "{date}" in text:
        from prefect.runtime import flow_run

        text = text.replace("{date}", flow_run.scheduled_start_time.strftime("%Y-%m-%d"))
    return Path(text).expanduser().absolute()
