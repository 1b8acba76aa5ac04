"""Plugins declare the core versions they support; an incompatible plugin is refused at discovery."""

from __future__ import annotations

import sys
import types
import warnings

import pytest
import verticals
from plugin_dists import GOOD_PLUGIN, dists_fixture  # noqa: F401
from verticals import compat
from verticals.errors import PluginError
from verticals.plugins import PluginWarning
from verticals.registry import get_registry

CORE = verticals.__version__

# Importing it would fail loudly: a refused plugin must be refused before its code runs.
EXPLODES_ON_IMPORT = '''
raise RuntimeError("imported a plugin that should have been refused")
'''


def _messages(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, PluginWarning)]


def _load() -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        registry = get_registry()
    return registry, _messages(record)


def test_plugin_whose_requires_dist_fits_the_core_loads_and_shows_it(dists):
    dists.add("verticals-churn", requires=(f"verticals>={CORE},<99", "polars>=1"))
    dists.only("churn")
    registry, messages = _load()
    assert messages == []
    info = registry.plugin_info("churn")
    assert info.status == "loaded"
    assert info.requires == [f">={CORE},<99 (Requires-Dist)"]
    assert info.to_dict()["requires"] == info.requires


def test_plugin_made_for_another_core_is_refused_before_import(dists):
    dists.add("verticals-churn", EXPLODES_ON_IMPORT, version="3.1", requires=("verticals>=99.0,<100",))
    dists.only("churn")
    registry, messages = _load()
    (message,) = messages
    assert message.count("\n") == 0
    assert message.startswith(f"plugin verticals-churn==3.1 supports verticals >=99.0,<100 (its Requires-Dist), "
                              f"but verticals {CORE} is installed")
    assert "(fix: install a release of verticals-churn made for verticals" in message
    assert "pip install 'verticals" in message
    info = registry.plugin_info("churn")
    assert info.status == "incompatible" and info.errors == [message]
    assert dists.module_names["verticals-churn"] not in sys.modules  # never imported
    assert registry.pipelines == {}


def test_incompatible_plugin_is_an_error_in_strict_mode(dists, monkeypatch):
    dists.add("verticals-churn", requires=("verticals<0.0.1",))
    dists.only("churn")
    monkeypatch.setenv("VERTICALS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=rf"verticals-churn==1\.0 supports verticals <0\.0\.1 .*"
                                          rf"but verticals {CORE} is installed"):
        get_registry()


def test_one_incompatible_plugin_leaves_the_others_working(dists):
    dists.add("verticals-old", requires=("verticals==0.0.1",), entry="old")
    dists.add("verticals-churn", requires=(f"verticals=={CORE}",))
    dists.only("old", "churn")
    registry, messages = _load()
    assert len(messages) == 1 and "verticals-old==1.0" in messages[0]
    assert registry.plugin_info("old").status == "incompatible"
    assert registry.plugin_info("churn").status == "loaded"
    assert "churn.churn_risk" in registry.pipelines


def module_requires(spec: str) -> str:
    """The good plugin, declaring ``VERTICALS_REQUIRES = spec`` in its module."""
    return GOOD_PLUGIN + f"\nVERTICALS_REQUIRES = {spec!r}\n"


def test_module_declaration_is_checked_too(dists):
    dists.add("verticals-churn", module_requires(">=99"), version="2.0")
    dists.only("churn")
    registry, messages = _load()
    (message,) = messages
    assert f"verticals-churn==2.0 supports verticals >=99 (its VERTICALS_REQUIRES), but verticals {CORE}" in message
    assert registry.plugin_info("churn").status == "incompatible"
    assert registry.pipelines == {}


def test_both_declarations_must_fit(dists):
    dists.add("verticals-churn", module_requires("<0.0.1"), requires=(f"verticals>={CORE}",))
    dists.only("churn")
    registry, messages = _load()
    assert len(messages) == 1 and "(its VERTICALS_REQUIRES)" in messages[0]
    assert registry.plugin_info("churn").requires == [f">={CORE} (Requires-Dist)", "<0.0.1 (VERTICALS_REQUIRES)"]


def test_a_fitting_module_declaration_loads(dists):
    dists.add("verticals-churn", module_requires(compat.compatible_range(CORE)))
    dists.only("churn")
    registry, messages = _load()
    assert messages == []
    assert registry.plugin_info("churn").status == "loaded"


@pytest.mark.parametrize("requires", [
    ("verticals",),                                   # no version constraint
    ('verticals>=99; extra == "legacy"',),            # only for an extra
    ('verticals>=99; python_version < "3"',),         # not for this Python
    ("verticals-finance>=99", "verticalsx>=99"),      # other distributions
    (),
])
def test_requirements_that_do_not_constrain_this_core_are_ignored(dists, requires):
    dists.add("verticals-churn", requires=requires)
    dists.only("churn")
    registry, messages = _load()
    assert messages == []
    assert registry.plugin_info("churn").status == "loaded"
    assert registry.plugin_info("churn").requires == []


@pytest.mark.parametrize(("source", "requires", "problem"), [
    (module_requires("0.1 or later"), (), "its VERTICALS_REQUIRES = '0.1 or later' is not a version "
                                                      "specifier"),
    (GOOD_PLUGIN + "\nVERTICALS_REQUIRES = 0.1\n", (), "its VERTICALS_REQUIRES is a float"),
    (GOOD_PLUGIN, ("verticals >= one",), "its Requires-Dist 'verticals >= one' is not a valid requirement"),
])
def test_a_malformed_declaration_is_reported_with_the_fix(dists, source, requires, problem):
    dists.add("verticals-churn", source, requires=requires)
    dists.only("churn")
    registry, messages = _load()
    (message,) = messages
    assert f"plugin verticals-churn==1.0 declares the core versions it supports wrongly: {problem}" in message
    assert "(fix: use a PEP 440 specifier such as 'verticals>=0.1,<0.2'" in message
    assert registry.plugin_info("churn").status == "failed"


def test_in_process_plugins_are_checked_by_their_module_declaration(dists):
    from verticals.testing import use_plugins

    module = types.ModuleType("inproc_plugin")
    exec(GOOD_PLUGIN + '\nVERTICALS_REQUIRES = ">=99"\n', module.__dict__)
    with pytest.warns(PluginWarning, match=r"plugin inproc==in-process supports verticals >=99"), \
            use_plugins({"inproc": module}) as registry:
        assert registry.plugin_info("inproc").status == "incompatible"
        assert registry.pipelines == {}


@pytest.mark.parametrize(("version", "expected"), [
    ("0.1.0", ">=0.1.0,<0.2"),
    ("0.3.2.dev4", ">=0.3.2,<0.4"),
    ("1.4.0", ">=1.4.0,<2"),
    ("2.0.1+local", ">=2.0.1,<3"),
])
def test_compatible_range_is_the_same_series(version, expected):
    assert compat.compatible_range(version) == expected
    assert compat.Requirement(expected, "test").fits(version.split("+")[0].split(".dev")[0])


@pytest.mark.parametrize(("spec", "core", "fits"), [
    (">=0.1,<0.2", "0.1.7", True),
    (">=0.1,<0.2", "0.2.0", False),
    (">=0.1,<0.2", "0.2.0rc1", False),   # a pre-release of 0.2 is not below 0.2
    (">=0.1", "0.2.0rc1", True),        # but it is a 0.2
    ("==0.1.0", "0.1.0+g1a2b3c", True),  # a local build is its public version
])
def test_requirement_fits(spec, core, fits):
    assert compat.Requirement(spec, "test").fits(core) is fits
    refused = compat.incompatibility(compat.Requirement(spec, "test"), "p==1", "p", version=core)
    assert (refused is None) is fits


def test_a_core_without_metadata_refuses_nothing():
    assert compat.incompatibility(compat.Requirement(">=99", "test"), "p==1", "p", version="0.0.0+unknown") is None


def test_the_installed_finance_plugin_declares_a_range_that_fits():
    from importlib import metadata

    requirement, problem = compat.from_distribution(metadata.distribution("verticals-finance"))
    assert problem is None and requirement is not None
    assert requirement.fits(CORE)
    import verticals_finance.plugin as finance

    declared, problem = compat.from_module(finance)
    assert problem is None and declared is not None and declared.fits(CORE)
