"""pytest fixtures shipped with verticals (entry point ``pytest11``): use them in plugin test suites."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from verticals.registry import Registry


@pytest.fixture
def verticals_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty ``VERTICALS_HOME`` (model store, dataset cache) for one test."""
    home = tmp_path / "verticals-home"
    home.mkdir()
    monkeypatch.setenv("VERTICALS_HOME", str(home))
    return home


@pytest.fixture
def verticals_plugins() -> Iterator[Callable[..., Registry]]:
    """Call ``verticals_plugins({"name": plugin_object})`` to run the test against those plugins only."""
    from verticals.testing import use_plugins

    with ExitStack() as stack:
        yield lambda plugins, entry_points=False: stack.enter_context(use_plugins(plugins, entry_points=entry_points))
