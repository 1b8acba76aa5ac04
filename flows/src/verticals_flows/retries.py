"""Which failures a task retries: the transient ones only.

A :class:`verticals.errors.VerticalsError` names a problem that the same call will hit again (bad data,
an unknown model, a plugin bug, a parity failure), so retrying it only delays the error. Anything else
(an ``OSError`` from a network filesystem, a worker that died, a CUDA hiccup) may pass on a second try.
"""

from __future__ import annotations

from typing import Any


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` for Prefect tasks: retry unless the error is a VerticalsError."""
    from verticals.errors import VerticalsError

    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as exc:  # the failure's exception, re-raised from the state
            error = exc
    return not isinstance(error, VerticalsError)
