"""Plugin discovery through real (fabricated) distributions: loading, failures, selection, tracing."""

from __future__ import annotations

import warnings

import pytest
from plugin_dists import dists_fixture  # noqa: F401
from verticals.errors import PluginError
from verticals.plugins import PluginWarning, iter_entry_points
from verticals.registry import get_registry

BROKEN_PLUGIN = '''
raise RuntimeError("cannot reach the licence server")
'''

MISSPELLED_HOOK = '''
from verticals import hookimpl


@hookimpl
def register_pipeline(register):
    pass
'''

WRONG_ARGUMENT = '''
from verticals import hookimpl


@hookimpl
def register_datasets(reg):
    pass
'''

UNDECORATED = '''
def register_pipelines(register):
    raise AssertionError("never called")
'''

OPTIONAL_FUTURE_HOOK = '''
from verticals import hookimpl


@hookimpl(optionalhook=True)
def after_monitor(pipeline):
    pass
'''

COMMAND_ONLY = '''
from verticals import hookimpl


@hookimpl
def register_commands(app):
    pass
'''


def _messages(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, PluginWarning)]


def test_fabricated_distribution_is_an_entry_point(dists):
    dists.add("verticals-churn", version="2.3.1")
    found = {ep.name: ep for ep in iter_entry_points()}
    assert "churn" in found
    assert found["churn"].dist.metadata["Name"] == "verticals-churn"


def test_good_plugin_loads_with_its_distribution_and_hooks(dists):
    dists.add("verticals-churn", version="2.3.1")
    dists.only("churn")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        registry = get_registry()
    assert _messages(record) == []
    info = registry.plugin_info("churn")
    assert (info.distribution, info.version, info.status, info.label) == (
        "verticals-churn", "2.3.1", "loaded", "verticals-churn==2.3.1")
    assert info.hooks == ["register_datasets", "register_models", "register_pipelines"]
    assert info.registered == {"datasets": ["churn.customers"], "models": ["churn.linear"],
                               "pipelines": ["churn.churn_risk"]}
    # The installed plugins of the checkout are seen, but not loaded, when not selected.
    others = {p.name: p.status for p in registry.plugins if p.name != "churn"}
    assert others and set(others.values()) == {"disabled"}


def test_plugin_that_fails_to_import_is_skipped_with_a_warning(dists):
    dists.add("verticals-churn")
    dists.add("verticals-broken", BROKEN_PLUGIN, version="0.3")
    dists.only("churn", "broken")
    with pytest.warns(PluginWarning) as record:
        registry = get_registry()
    (message,) = _messages(record)
    assert "verticals-broken==0.3" in message
    assert "RuntimeError: cannot reach the licence server" in message
    assert "VERTICALS_DISABLE_PLUGINS=broken" in message
    assert registry.plugin_info("broken").status == "failed"
    assert registry.plugin_info("broken").errors == [message]
    # Everything else keeps working.
    assert registry.pipeline("churn.churn_risk").plugin == "churn"


def test_strict_mode_turns_an_import_failure_into_an_error(dists, monkeypatch):
    dists.add("verticals-broken", BROKEN_PLUGIN, version="0.3")
    dists.only("broken")
    monkeypatch.setenv("VERTICALS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"verticals-broken==0\.3 .*failed to import: RuntimeError"):
        get_registry()


def test_two_distributions_claiming_one_plugin_name_are_both_named(dists):
    dists.add("verticals-churn", entry="churn")
    dists.add("acme-churn", COMMAND_ONLY, version="9.9", entry="churn")
    dists.only("churn")
    with pytest.warns(PluginWarning) as record:
        registry = get_registry()
    (message,) = _messages(record)
    # Whichever loads second is refused; the message names both distributions.
    assert "verticals-churn==1.0" in message and "acme-churn==9.9" in message
    assert "already taken" in message
    statuses = sorted(p.status for p in registry.plugins if p.name == "churn")
    assert statuses == ["failed", "loaded"]


def test_unknown_hook_fails_loudly_with_a_suggestion(dists):
    dists.add("verticals-typo", MISSPELLED_HOOK)
    dists.only("typo")
    with pytest.warns(PluginWarning) as record:
        registry = get_registry()
    (message,) = _messages(record)
    assert "verticals-typo==1.0 implements unknown hook 'register_pipeline'" in message
    assert "did you mean 'register_pipelines'?" in message
    assert registry.plugin_info("typo").status == "failed"
    assert registry.plugin_info("typo").hooks == []


def test_unknown_hook_is_an_error_in_strict_mode(dists, monkeypatch):
    dists.add("verticals-typo", MISSPELLED_HOOK)
    dists.only("typo")
    monkeypatch.setenv("VERTICALS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="unknown hook 'register_pipeline'"):
        get_registry()


def test_hook_taking_arguments_the_spec_does_not_pass_is_refused(dists):
    dists.add("verticals-args", WRONG_ARGUMENT)
    dists.only("args")
    with pytest.warns(PluginWarning) as record:
        registry = get_registry()
    (message,) = _messages(record)
    assert "hook `register_datasets` takes argument(s) reg that the hook does not pass" in message
    assert "register_datasets(register)" in message
    assert registry.plugin_info("args").status == "failed"


def test_hook_named_function_without_hookimpl_is_pointed_out(dists):
    dists.add("verticals-bare", UNDECORATED)
    dists.only("bare")
    with pytest.warns(PluginWarning, match="defines `register_pipelines` without @hookimpl"):
        registry = get_registry()
    assert registry.plugin_info("bare").status == "loaded"
    assert registry.pipelines == {}


def test_optional_hook_from_a_newer_contract_is_tolerated(dists):
    dists.add("verticals-future", OPTIONAL_FUTURE_HOOK)
    dists.only("future")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        registry = get_registry()
    assert _messages(record) == []
    assert registry.plugin_info("future").status == "loaded"


@pytest.mark.parametrize("allow", ["churn", "verticals-churn", "verticals_churn", " CHURN , other_thing"])
def test_allow_list_selects_by_entry_point_or_distribution_name(dists, monkeypatch, allow):
    dists.add("verticals-churn")
    dists.add("verticals-noise", COMMAND_ONLY)
    monkeypatch.setenv("VERTICALS_PLUGINS", allow)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # 'other_thing' matches nothing: tested below
        registry = get_registry()
    status = {p.name: p.status for p in registry.plugins}
    assert status["churn"] == "loaded"
    assert status["noise"] == "disabled"
    assert set(status.values()) == {"loaded", "disabled"}


def test_allow_list_typo_is_reported(dists, monkeypatch):
    dists.add("verticals-churn")
    monkeypatch.setenv("VERTICALS_PLUGINS", "chrun")
    with pytest.warns(PluginWarning, match="VERTICALS_PLUGINS names 'chrun', which matches no installed "
                                           "plugin .*did you mean 'churn'"):
        registry = get_registry()
    assert registry.plugin_info("churn").status == "disabled"


@pytest.mark.parametrize("block", ["noise", "verticals-noise"])
def test_block_list_disables_a_plugin(dists, monkeypatch, block):
    dists.add("verticals-churn")
    dists.add("verticals-noise", BROKEN_PLUGIN)  # would warn if it were loaded
    dists.only("churn", "noise")
    monkeypatch.setenv("VERTICALS_DISABLE_PLUGINS", block)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        registry = get_registry()
    assert _messages(record) == []
    assert registry.plugin_info("noise").status == "disabled"
    assert registry.plugin_info("churn").status == "loaded"


def test_block_list_wins_over_allow_list(dists, monkeypatch):
    dists.add("verticals-churn")
    dists.only("churn")
    monkeypatch.setenv("VERTICALS_DISABLE_PLUGINS", "churn")
    assert get_registry().plugin_info("churn").status == "disabled"


def test_trace_prints_each_hook_call_and_registration(dists, monkeypatch, capsys):
    dists.add("verticals-churn", version="2.0")
    dists.only("churn")
    monkeypatch.setenv("VERTICALS_TRACE_HOOKS", "1")
    registry = get_registry()
    registry.notify("before_train", pipeline="churn.churn_risk", config={})
    err = capsys.readouterr().err.splitlines()
    assert "[verticals trace] register_datasets -> churn(register)" in err
    assert "[verticals trace] registered dataset churn.customers from verticals-churn==2.0" in err
    assert "[verticals trace] registered pipeline churn.churn_risk from verticals-churn==2.0" in err
    assert any(line.startswith("[verticals trace] register_pipelines <- churn (") and line.endswith(" ms)")
               for line in err)
    # The plugin implements no before_train: notify traces nothing for it.
    assert not any("before_train" in line for line in err)


def test_no_trace_output_by_default(dists, capsys):
    dists.add("verticals-churn")
    dists.only("churn")
    get_registry()
    assert "[verticals trace]" not in capsys.readouterr().err

