"""The registry built from real (fabricated) plugin distributions: names, validation, notify, once per process."""

from __future__ import annotations

import threading
import warnings

import pytest
from plugin_dists import dists_fixture  # noqa: F401
from verticals import DatasetSpec, ModelSpec, Pipeline
from verticals.errors import NotFoundError, PluginError
from verticals.plugins import PluginWarning
from verticals.registry import get_registry, reset_registry

# A second plugin that reuses the good plugin's local names and claims its aliases.
RIVAL_PLUGIN = '''
from verticals import Column, DatasetSpec, ModelSpec, Pipeline, Schema, hookimpl


class Rival(Pipeline):
    name = "churn_risk"
    dataset = "customers"
    model = "linear"


@hookimpl
def register_datasets(register):
    register(DatasetSpec("customers", lambda: None, Schema((Column("id", "int", "id"), Column("x")))),
             aliases=("crm_customers",))


@hookimpl
def register_models(register):
    register(ModelSpec("linear", lambda info: None))


@hookimpl
def register_pipelines(register):
    register(Rival(), aliases=("churn",))
'''

WRONG_TYPES = '''
from verticals import Pipeline, hookimpl


class Forgotten(Pipeline):
    name = "forgotten"
    dataset = "d"
    model = "m"


@hookimpl
def register_pipelines(register):
    register(Forgotten)
    register({"name": "a_dict"})
'''

SAME_NAME_TWICE = '''
from verticals import ModelSpec, hookimpl


@hookimpl
def register_models(register):
    register(ModelSpec("mlp", lambda info: None))
    register(ModelSpec("mlp", lambda info: None))
'''

INVALID_PIPELINE = '''
from verticals import OutputColumn, Pipeline, hookimpl


class NoScore(Pipeline):
    name = "no_score"
    dataset = "d"
    model = "m"
    score_column = "probability"
    output_columns = (OutputColumn("score", "float"),)


@hookimpl
def register_pipelines(register):
    register(NoScore())
'''

DANGLING_DATASET = '''
from verticals import ModelSpec, Pipeline, hookimpl


class Orphan(Pipeline):
    name = "orphan"
    dataset = "custmers"
    model = "linear"


@hookimpl
def register_models(register):
    register(ModelSpec("linear", lambda info: None))


@hookimpl
def register_pipelines(register):
    register(Orphan(), aliases=("lost",))
'''

CROSS_PLUGIN_PIPELINE = '''
from verticals import Pipeline, hookimpl


class Reuse(Pipeline):
    name = "reuse"
    dataset = "crm_customers"       # another plugin's alias
    model = "churn.linear"          # another plugin's qualified name


@hookimpl
def register_pipelines(register):
    register(Reuse())
'''

RAISING_REGISTRATION = '''
from verticals import ModelSpec, hookimpl


@hookimpl(tryfirst=True)  # runs before the other plugins' register_models
def register_models(register):
    register(ModelSpec("kept", lambda info: None))
    raise KeyError("missing config")
'''

OBSERVER = '''
from verticals import hookimpl

SEEN = []


@hookimpl
def after_train(pipeline, metrics):
    SEEN.append((pipeline, metrics["test"]["auc"]))
'''

FAILING_OBSERVER = '''
from verticals import hookimpl


@hookimpl(tryfirst=True)
def after_train(pipeline, metrics, history):
    raise ConnectionError("metrics server down")
'''

REENTRANT = '''
from verticals import hookimpl


@hookimpl
def register_datasets(register):
    from verticals.registry import get_registry

    get_registry()
'''


def _messages(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, PluginWarning)]


def _quiet_registry():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        registry = get_registry()
    return registry, _messages(record)


def test_objects_are_qualified_by_plugin_and_found_by_any_name(dists):
    dists.add("verticals-churn")
    dists.only("churn")
    registry, problems = _quiet_registry()
    assert problems == []
    pipe = registry.pipeline("churn.churn_risk")
    assert isinstance(pipe, Pipeline) and pipe.plugin == "churn" and pipe.qualified_name == "churn.churn_risk"
    assert registry.pipeline("churn_risk") is pipe  # unique local name
    assert registry.pipeline("churn") is pipe  # alias
    assert isinstance(registry.dataset("crm_customers"), DatasetSpec)
    assert registry.dataset_of(pipe).qualified_name == "churn.customers"
    model = registry.model_of(pipe)
    assert isinstance(model, ModelSpec) and model.qualified_name == "churn.linear"


def test_unknown_name_suggests_close_ones(dists):
    dists.add("verticals-churn")
    dists.only("churn")
    registry, _ = _quiet_registry()
    with pytest.raises(NotFoundError, match=r"unknown pipeline 'churn_rsik' \(fix: did you mean 'churn_risk'"):
        registry.pipeline("churn_rsik")
    with pytest.raises(NotFoundError, match="run 'verticals datasets' to list them"):
        registry.dataset("zzz")


def test_same_local_name_in_two_plugins_is_ambiguous_but_qualified_names_work(dists):
    dists.add("verticals-churn")
    dists.add("verticals-rival", RIVAL_PLUGIN, version="0.9")
    dists.only("churn", "rival")
    with pytest.warns(PluginWarning):  # the aliases clash; see the next test
        registry = get_registry()
    assert registry.pipeline("rival.churn_risk").plugin == "rival"
    assert registry.pipeline("churn.churn_risk").plugin == "churn"
    with pytest.raises(NotFoundError, match=r"'churn_risk' is ambiguous: churn\.churn_risk, rival\.churn_risk"):
        registry.pipeline("churn_risk")


@pytest.mark.parametrize("order", ["churn-first", "rival-first"])
def test_alias_claimed_by_two_plugins_names_both(dists, order):
    adds = [("verticals-churn", {"version": "1.0"}), ("verticals-rival", {"source": RIVAL_PLUGIN, "version": "0.9"})]
    for dist, kw in adds if order == "churn-first" else adds[::-1]:
        dists.add(dist, **kw)
    dists.only("churn", "rival")
    with pytest.warns(PluginWarning) as record:
        registry = get_registry()
    messages = _messages(record)
    clash = [m for m in messages if "alias 'churn' of pipeline" in m]
    assert len(clash) == 1
    assert "verticals-churn==1.0" in clash[0] and "verticals-rival==0.9" in clash[0]
    assert "hook `register_pipelines`" in clash[0] and "choose another alias" in clash[0]
    # The first registration keeps the alias; the message names the owner, and the loser is the other one.
    labels = {"churn": "verticals-churn==1.0", "rival": "verticals-rival==0.9"}
    owner = registry.aliases["pipeline"]["churn"].split(".")[0]
    loser = "rival" if owner == "churn" else "churn"
    assert registry.aliases["pipeline"]["churn"] == f"{owner}.churn_risk"
    assert f"already points to '{owner}.churn_risk' registered by plugin {labels[owner]}" in clash[0], clash[0]
    assert f"pipeline '{loser}.churn_risk'" in clash[0] and f"ignored for {labels[loser]}" in clash[0], clash[0]
    assert registry.pipeline("churn").plugin == owner
    assert len([m for m in messages if "alias 'crm_customers' of dataset" in m]) == 1


def test_alias_that_shadows_another_plugins_name_is_dropped(dists):
    dists.add("verticals-churn")
    dists.add("verticals-shadow", '''
from verticals import ModelSpec, hookimpl


@hookimpl
def register_models(register):
    register(ModelSpec("mlp", lambda info: None), aliases=("linear",))
''')
    dists.only("churn", "shadow")
    with pytest.warns(PluginWarning, match="alias 'linear' of model 'shadow.mlp' is also the name of model "
                                           "'churn.linear' of plugin verticals-churn==1.0"):
        registry = get_registry()
    assert "linear" not in registry.aliases["model"]
    assert registry.model("linear").qualified_name == "churn.linear"


def test_same_name_registered_twice_by_one_plugin(dists):
    dists.add("verticals-twice", SAME_NAME_TWICE, version="0.1")
    dists.only("twice")
    with pytest.warns(PluginWarning) as record:
        registry = get_registry()
    (message,) = _messages(record)
    assert ("plugin verticals-twice==0.1 hook `register_models`: model 'twice.mlp' is already registered"
            in message)
    assert list(registry.models) == ["twice.mlp"]


def test_wrong_type_names_plugin_hook_object_and_fix(dists):
    dists.add("verticals-types", WRONG_TYPES, version="0.2")
    dists.only("types")
    with pytest.warns(PluginWarning) as record:
        registry = get_registry()
    first, second = _messages(record)
    assert first.startswith("plugin verticals-types==0.2 hook `register_pipelines`: registered type ")
    assert "Forgotten" in first and "expected a Pipeline" in first
    assert first.endswith("(fix: register an instance: register(Forgotten()))")
    assert "registered dict {'name': 'a_dict'}" in second
    assert second.endswith("(fix: pass an instance of verticals.Pipeline)")
    assert registry.pipelines == {}
    assert len(registry.plugin_info("types").errors) == 2


def test_wrong_type_is_an_error_in_strict_mode(dists, monkeypatch):
    dists.add("verticals-types", WRONG_TYPES, version="0.2")
    dists.only("types")
    monkeypatch.setenv("VERTICALS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"verticals-types==0\.2 hook `register_pipelines`: registered type"):
        get_registry()


def test_invalid_pipeline_is_refused_with_the_reason(dists):
    dists.add("verticals-bad", INVALID_PIPELINE)
    dists.only("bad")
    with pytest.warns(PluginWarning, match="pipeline 'no_score' has score_column 'probability' that is not "
                                           r"among its output columns \['score'\]"):
        registry = get_registry()
    assert registry.pipelines == {}


def test_pipeline_naming_an_unregistered_dataset_is_skipped(dists):
    dists.add("verticals-churn")
    dists.add("verticals-orphan", DANGLING_DATASET, version="0.5")
    dists.only("churn", "orphan")
    with pytest.warns(PluginWarning) as record:
        registry = get_registry()
    (message,) = _messages(record)
    assert ("plugin verticals-orphan==0.5 hook `register_pipelines`: pipeline 'orphan.orphan' names dataset "
            "'custmers', which no plugin registered") in message
    assert "did you mean 'customers'?" in message
    assert "orphan.orphan" not in registry.pipelines
    assert "lost" not in registry.aliases["pipeline"]
    assert registry.plugin_info("orphan").registered == {"models": ["orphan.linear"], "pipelines": []}
    with pytest.raises(NotFoundError):
        registry.pipeline("lost")


def test_pipeline_may_use_another_plugins_alias_or_qualified_name(dists):
    dists.add("verticals-churn")
    dists.add("verticals-reuse", CROSS_PLUGIN_PIPELINE)
    dists.only("churn", "reuse")
    registry, problems = _quiet_registry()
    assert problems == []
    pipe = registry.pipeline("reuse.reuse")
    assert registry.dataset_of(pipe).qualified_name == "churn.customers"
    assert registry.model_of(pipe).qualified_name == "churn.linear"


def test_registration_hook_that_raises_keeps_other_plugins_working(dists):
    dists.add("verticals-churn")
    dists.add("verticals-raiser", RAISING_REGISTRATION, version="0.7")
    dists.only("churn", "raiser")
    with pytest.warns(PluginWarning) as record:
        registry = get_registry()
    (message,) = _messages(record)
    assert "plugin verticals-raiser==0.7 hook `register_models` raised KeyError: 'missing config'" in message
    # Both plugins' models are there: the failure stopped neither the other plugin nor what came before.
    assert set(registry.models) == {"churn.linear", "raiser.kept"}
    assert "churn.churn_risk" in registry.pipelines


def test_notify_calls_every_observer_even_after_one_raises(dists):
    dists.add("verticals-observer", OBSERVER)
    dists.add("verticals-failing", FAILING_OBSERVER, version="0.4")  # tryfirst: it runs first
    dists.only("observer", "failing")
    registry, _ = _quiet_registry()
    metrics = {"train": {}, "valid": {}, "test": {"auc": 0.81}}
    with pytest.warns(PluginWarning) as record:
        registry.notify("after_train", pipeline="x.y", metrics=metrics, history=[])
    (message,) = _messages(record)
    assert message.startswith("plugin verticals-failing==0.4 hook `after_train` raised ConnectionError: "
                              "metrics server down")
    assert registry.plugin_info("failing").errors == [message]
    assert dists.module("verticals-observer").SEEN == [("x.y", 0.81)]  # called despite the failure, with only the args it takes


def test_notify_raises_in_strict_mode(dists, monkeypatch):
    dists.add("verticals-failing", FAILING_OBSERVER)
    dists.only("failing")
    registry, _ = _quiet_registry()
    monkeypatch.setenv("VERTICALS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="hook `after_train` raised ConnectionError"):
        registry.notify("after_train", pipeline="x.y", metrics={}, history=[])


def test_registry_is_built_once_per_process(dists):
    dists.add("verticals-churn")
    dists.only("churn")
    first = get_registry()
    assert get_registry() is first
    module = dists.module("verticals-churn")
    assert module.CALLS == ["register_datasets", "register_models", "register_pipelines"]
    reset_registry()
    assert get_registry() is not first  # reset rebuilds ...
    assert module.CALLS.count("register_datasets") == 2  # ... calling the hooks again, on the same module


def test_concurrent_first_use_builds_one_registry(dists):
    dists.add("verticals-churn")
    dists.only("churn")
    results = []
    threads = [threading.Thread(target=lambda: results.append(get_registry())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8 and len({id(r) for r in results}) == 1
    module = dists.module("verticals-churn")
    assert module.CALLS.count("register_pipelines") == 1


def test_plugin_asking_for_the_registry_while_it_is_built_gets_an_error_not_a_hang(dists):
    dists.add("verticals-reentrant", REENTRANT)
    dists.only("reentrant")
    with pytest.raises(PluginError, match=r"get_registry\(\) was called while the registry was being built"):
        get_registry()
    reset_registry()
    dists.only("none-selected")
    with pytest.warns(PluginWarning):  # 'none-selected' matches nothing
        assert get_registry().pipelines == {}  # the failed build left nothing half-made behind
