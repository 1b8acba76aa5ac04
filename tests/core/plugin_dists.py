"""Fabricate installed plugin distributions for tests, the way pip would leave them.

Each distribution gets its own folder on ``sys.path`` holding ``<name>-<version>.dist-info/``
(``METADATA`` and ``entry_points.txt`` with group ``[verticals]``) and the plugin module, so
``importlib.metadata.entry_points(group="verticals")`` finds it exactly like an installed plugin and
the registry loads it through the real discovery path. Nothing is installed; the folders live in
``tmp_path`` and the modules are removed from ``sys.modules`` afterwards.

The real plugins of this checkout (``verticals-finance``, ``verticals-flows``) stay visible too:
tests select with ``VERTICALS_PLUGINS`` where they need isolation (``Dists.only``).
"""

from __future__ import annotations

import re
import sys
import textwrap
import types
from pathlib import Path

import pytest
from verticals.registry import reset_registry

ENV_VARS = ("VERTICALS_PLUGINS", "VERTICALS_DISABLE_PLUGINS", "VERTICALS_STRICT_PLUGINS",
            "VERTICALS_TRACE_HOOKS", "VERTICALS_DEBUG")

# A plugin that registers one dataset, one model and one pipeline. The model factory imports torch
# lazily (nothing here calls it) and the loader imports polars lazily.
GOOD_PLUGIN = '''
from verticals import Column, DatasetSpec, ModelSpec, OutputColumn, Pipeline, Schema, SplitSpec, hookimpl

CALLS = []


def load():
    import polars as pl

    return pl.DataFrame({"customer_id": [1, 2, 3, 4], "tenure": [1.0, 5.0, 2.5, 9.0],
                         "plan": ["a", "b", "a", "c"], "churned": [1, 0, 1, 0]}).lazy()


def factory(info, **options):
    import torch

    return torch.nn.Linear(len(info.get("numeric", [])), 1)


class ChurnRisk(Pipeline):
    name = "churn_risk"
    description = "Churn risk of a customer"
    dataset = "customers"
    model = "linear"
    task = "binary"
    output_columns = (OutputColumn("score", "float", "P(churn)"),)


@hookimpl
def register_datasets(register):
    CALLS.append("register_datasets")
    register(DatasetSpec(
        name="customers",
        loader=load,
        schema=Schema((Column("customer_id", "int", "id"), Column("tenure", "float"),
                       Column("plan", "category"), Column("churned", "int", "target", categories=("0", "1")))),
        split=SplitSpec("stratified"),
        description="Four customers",
        source="written by hand in the test",
    ), aliases=("crm_customers",))


@hookimpl
def register_models(register):
    CALLS.append("register_models")
    register(ModelSpec(name="linear", factory=factory, outputs=("logits",), description="one layer"))


@hookimpl
def register_pipelines(register):
    CALLS.append("register_pipelines")
    register(ChurnRisk(), aliases=("churn",))
'''


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


class Dists:
    """Writes fabricated distributions under ``root`` and puts them on ``sys.path``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.monkeypatch = root, monkeypatch
        self.modules: list[str] = []
        self.module_names: dict[str, str] = {}

    def add(self, dist: str, source: str = GOOD_PLUGIN, *, version: str = "1.0", entry: str | None = None,
            module: str | None = None, files: dict[str, str] | None = None,
            requires: tuple[str, ...] = ()) -> Path:
        """Fabricate distribution ``dist`` whose entry point ``entry = module`` loads ``source``.

        Args:
            dist: distribution name (``METADATA`` ``Name``), e.g. ``verticals-churn``.
            source: the plugin module's code.
            version: ``METADATA`` ``Version``.
            entry: entry-point name in group ``verticals`` (the plugin's name); default: ``dist``
                without a ``verticals-`` prefix, with underscores.
            module: module name; default ``<entry>_plugin_<n>`` so tests never share a cached module.
            files: extra files to write next to the module, by relative path.
            requires: ``Requires-Dist`` lines of ``METADATA``, e.g. ``("verticals>=0.1,<0.2",)``.
        """
        entry = entry or _normalize(dist.removeprefix("verticals-"))
        module = module or f"{entry}_plugin_{len(self.modules)}_{abs(hash(self.root)) % 10_000}"
        site = self.root / f"site-{len(self.modules)}-{_normalize(dist)}"
        site.mkdir(parents=True)
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        for rel, text in (files or {}).items():
            path = site / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        self.write_dist_info(site, dist, version, {entry: module}, requires)
        self.modules.append(module)
        self.module_names[dist] = module
        self.monkeypatch.syspath_prepend(str(site))
        return site

    def module(self, dist: str) -> types.ModuleType:
        """The plugin module of ``dist``, as loaded by the registry (to read what its hooks recorded)."""
        return sys.modules[self.module_names[dist]]

    def add_tree(self, site: Path, dist: str, version: str, entry_points: dict[str, str],
                 packages: list[str], requires: tuple[str, ...] = ()) -> None:
        """Expose an existing source tree ``site`` (e.g. a tutorial's ``src/``) as distribution ``dist``."""
        self.write_dist_info(site, dist, version, entry_points, requires)
        self.modules.extend(packages)
        self.monkeypatch.syspath_prepend(str(site))

    @staticmethod
    def write_dist_info(site: Path, dist: str, version: str, entry_points: dict[str, str],
                        requires: tuple[str, ...] = ()) -> None:
        info = site / f"{_normalize(dist)}-{version}.dist-info"
        info.mkdir()
        requires_dist = "".join(f"Requires-Dist: {line}\n" for line in requires)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n{requires_dist}")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[verticals]\n{lines}")

    def only(self, *names: str) -> None:
        """Select these plugins (entry-point or distribution names) with ``VERTICALS_PLUGINS``."""
        self.monkeypatch.setenv("VERTICALS_PLUGINS", ",".join(names))

    def cleanup(self) -> None:
        for name in list(sys.modules):
            if any(name == m or name.startswith(m + ".") for m in self.modules):
                del sys.modules[name]


@pytest.fixture(name="dists")
def dists_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Fixture ``dists`` (import ``dists_fixture`` into a test module to use it).

    A clean plugin environment: no ``VERTICALS_*`` variables, a fresh registry, a :class:`Dists`.
    """
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    reset_registry()
    factory = Dists(tmp_path, monkeypatch)
    yield factory
    reset_registry()
    factory.cleanup()
