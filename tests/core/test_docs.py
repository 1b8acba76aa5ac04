"""The plugin docs stay true: every hook documented with its real arguments, every example runs.

* ``docs/hooks.md`` must have one entry per hookspec (``### hook_name(arg, ...)``), no entry for a hook
  that does not exist, and an example per hook that passes the checks an installed plugin passes.
* ``docs/plugins.md`` is a tutorial: its titled code blocks are written to a temporary folder, exposed
  as an installed distribution (a fabricated dist-info from the tutorial's own ``pyproject.toml``),
  loaded through entry-point discovery, and the tutorial's test file is run.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import sys
import tomllib
import types
import warnings
from pathlib import Path

import pluggy
import pytest
from plugin_dists import dists_fixture  # noqa: F401
from verticals import hookspecs
from verticals.plugins import PluginWarning, check_plugin
from verticals.registry import build_registry, get_registry

DOCS = Path(__file__).resolve().parents[2] / "docs"
HOOKS_MD = DOCS / "hooks.md"
PLUGINS_MD = DOCS / "plugins.md"

_FENCE = re.compile(r"^```([\w+-]*)(?:[ \t]+title=\"([^\"]+)\")?[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
# A heading that is one identifier, optionally in backticks and with an argument list: a hook entry.
_HOOK_HEADING = re.compile(r"^#{2,4}[ \t]+`?([A-Za-z_]\w*)(?:\(([^)]*)\))?`?[ \t]*$", re.M)


def _without_code(text: str) -> str:
    """``text`` with fenced code blanked out, keeping every offset (a ``# comment`` is no heading)."""
    return _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def _specs() -> dict[str, list[str]]:
    return {name: list(inspect.signature(fn).parameters)
            for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")}


def _entries() -> dict[str, tuple[list[str] | None, str]]:
    """Documented hooks: name -> (arguments in the heading, the section's text up to the next heading)."""
    text = HOOKS_MD.read_text()
    prose = _without_code(text)
    headings = [m for m in re.finditer(r"^#{1,4}[ \t].*$", prose, re.M)]
    entries = {}
    for i, heading in enumerate(headings):
        m = _HOOK_HEADING.match(heading.group(0))
        if not m:
            continue
        end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
        args = None if m.group(2) is None else [a.strip() for a in m.group(2).split(",") if a.strip()]
        entries[m.group(1)] = (args, text[heading.end():end])
    return entries


def _python_blocks(section: str) -> list[str]:
    return [m.group(3) for m in _FENCE.finditer(section) if m.group(1) == "python"]


def _module_from(code: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(code, f"<{name}>", "exec"), module.__dict__)
    return module


def _manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


# -- docs/hooks.md ------------------------------------------------------------------------------------
def test_the_contract_has_hooks_and_each_has_a_docstring():
    specs = _specs()
    assert {"register_datasets", "register_models", "register_pipelines", "after_train"} <= set(specs)
    undocumented = [name for name in specs if not (getattr(hookspecs, name).__doc__ or "").strip()]
    assert undocumented == [], f"hookspecs without a docstring: {undocumented}"


def test_every_hookspec_has_an_entry_in_hooks_md():
    missing = sorted(set(_specs()) - set(_entries()))
    assert missing == [], f"docs/hooks.md lacks an entry '### name(args)' for: {missing}"


def test_hooks_md_documents_no_hook_that_does_not_exist():
    unknown = sorted(set(_entries()) - set(_specs()))
    assert unknown == [], f"docs/hooks.md documents hooks not in verticals.hookspecs: {unknown}"


def test_documented_arguments_are_the_specs_arguments():
    specs, entries = _specs(), _entries()
    wrong = {name: (entries[name][0], args) for name, args in specs.items()
             if name in entries and entries[name][0] != args}
    assert wrong == {}, f"heading arguments (documented, actual) differ: {wrong}"


@pytest.mark.parametrize("hook", sorted(_specs()))
def test_hook_entry_says_who_calls_it_and_what_it_takes_and_returns(hook):
    _, section = _entries().get(hook, (None, ""))
    for field in ("**Called by:**", "**Arguments:**", "**Returns:**"):
        assert field in section, f"docs/hooks.md entry for {hook} lacks {field}"
    for arg in _specs()[hook]:
        assert re.search(rf"`{arg}[`(]", section), f"docs/hooks.md entry for {hook} does not describe `{arg}`"


@pytest.mark.parametrize("hook", sorted(_specs()))
def test_hook_example_is_a_valid_plugin(hook):
    _, section = _entries().get(hook, (None, ""))
    blocks = _python_blocks(section)
    assert blocks, f"docs/hooks.md entry for {hook} has no python example"
    module = _module_from("\n".join(blocks), f"docs_example_{hook}")
    errors, notes = check_plugin(_manager(), module, f"docs/hooks.md#{hook}")
    assert errors == [] and notes == []
    impl = getattr(module, hook, None)
    assert getattr(impl, f"{hookspecs.PROJECT}_impl", None) is not None, f"the example does not implement {hook}"


def test_registration_examples_register_valid_objects():
    entries = _entries()
    code = "\n".join(b for hook in ("register_datasets", "register_models", "register_pipelines")
                     for b in _python_blocks(entries[hook][1]))
    module = _module_from(code, "docs_registration_examples")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        registry = build_registry({"support": module}, entry_points=False)
    assert [str(w.message) for w in record if issubclass(w.category, PluginWarning)] == []
    assert list(registry.datasets) == ["support.support_tickets"]
    assert list(registry.models) == ["support.linear"]
    pipeline = registry.pipeline("escalation")
    assert pipeline.qualified_name == "support.ticket_escalation"
    assert registry.dataset_of(pipeline).qualified_name == "support.support_tickets"


def test_lifecycle_example_runs_through_notify():
    entries = _entries()
    module = _module_from("\n".join(_python_blocks(entries["after_score_batch"][1])), "docs_lifecycle")
    registry = build_registry({"observer": module}, entry_points=False)
    for i in range(3):
        registry.notify("after_score_batch", pipeline="support.ticket_escalation", version=1, batch_index=i,
                        rows_in=100, rows_scored=98, rows_rejected=2, seconds=0.5)
    assert module.TOTALS == {"rows": 294, "seconds": 1.5}


# -- docs/plugins.md ----------------------------------------------------------------------------------
def _tutorial_files() -> dict[str, str]:
    return {m.group(2): m.group(3) for m in _FENCE.finditer(PLUGINS_MD.read_text()) if m.group(2)}


def _install_tutorial(dists, root: Path, replace: tuple[str, str] | None = None) -> dict:
    """Write the tutorial's files under ``root`` and expose them as an installed distribution."""
    files = _tutorial_files()
    for rel, text in files.items():
        if replace and replace[0] in text:
            text = text.replace(*replace)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    project = tomllib.loads(files["pyproject.toml"])["project"]
    src = root / "src"
    packages = sorted(p.name for p in src.iterdir() if (p / "__init__.py").exists())
    dists.add_tree(src, project["name"], project["version"], project["entry-points"]["verticals"], packages,
                   tuple(project.get("dependencies", ())))
    dists.only(*project["entry-points"]["verticals"])
    return project


def test_tutorial_has_the_files_it_promises():
    files = _tutorial_files()
    assert set(files) == {"pyproject.toml", "src/verticals_telco/__init__.py", "src/verticals_telco/plugin.py",
                          "tests/conftest.py", "tests/test_plugin.py"}
    for rel in files:  # the layout drawing lists them
        assert Path(rel).name in PLUGINS_MD.read_text().split("## 1.")[0]


def test_tutorial_plugin_installs_and_registers_what_the_text_says(dists, tmp_path, capsys):
    project = _install_tutorial(dists, tmp_path / "verticals-telco")
    assert project["entry-points"]["verticals"] == {"telco": "verticals_telco.plugin"}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        registry = get_registry()
    assert [str(w.message) for w in record if issubclass(w.category, PluginWarning)] == []
    info = registry.plugin_info("telco")
    assert (info.status, info.label) == ("loaded", "verticals-telco==0.1.0")
    assert len(info.hooks) == 3  # "loaded, 3 hooks"
    assert info.registered == {"datasets": ["telco.subscribers"], "models": ["telco.mlp"],
                               "pipelines": ["telco.churn"]}
    text = PLUGINS_MD.read_text()
    for name in ("telco.churn", "telco.subscribers", "telco.mlp", "telco_churn", "verticals-telco==0.1.0"):
        assert name in text
    assert registry.pipeline("telco_churn") is registry.pipeline("telco.churn")


def test_tutorial_plugin_imports_nothing_heavy_at_module_level():
    # The rule the tutorial teaches first: torch, polars and numpy only inside functions.
    tree = ast.parse(_tutorial_files()["src/verticals_telco/plugin.py"])
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert top & {"torch", "polars", "numpy", "onnxruntime", "prefect"} == set()
    inner = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {"torch", "polars", "numpy"} <= inner  # ... yet the plugin does use them


def test_tutorial_test_file_passes(dists, tmp_path):
    root = tmp_path / "verticals-telco"
    _install_tutorial(dists, root)
    spec = importlib.util.spec_from_file_location("tutorial_test_plugin", root / "tests" / "test_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [fn for name, fn in vars(module).items() if name.startswith("test_") and callable(fn)]
    assert len(tests) == 2
    for test in tests:
        test()


def test_tutorial_warning_example_is_what_verticals_prints(dists, tmp_path):
    text = PLUGINS_MD.read_text()
    (shown,) = [line for line in text.splitlines() if line.startswith("warning: plugin verticals-telco")
                and " hook `" in line]
    _install_tutorial(dists, tmp_path / "broken", replace=("register(ChurnPipeline(),", "register(ChurnPipeline,"))
    with pytest.warns(PluginWarning) as record:
        get_registry()
    messages = [str(w.message) for w in record if issubclass(w.category, PluginWarning)]
    assert messages == [shown.removeprefix("warning: ")]


def test_tutorial_version_refusal_example_is_what_verticals_prints(dists, tmp_path, monkeypatch):
    from verticals import compat

    text = PLUGINS_MD.read_text()
    (shown,) = [line for line in text.splitlines()
                if line.startswith("warning: plugin verticals-telco") and "supports verticals" in line]
    core = re.search(r"but verticals (\S+) is installed", shown).group(1)
    monkeypatch.setattr(compat, "core_version", lambda: core)
    _install_tutorial(dists, tmp_path / "verticals-telco")
    with pytest.warns(PluginWarning) as record:
        registry = get_registry()
    messages = [str(w.message) for w in record if issubclass(w.category, PluginWarning)]
    assert messages == [shown.removeprefix("warning: ")]
    assert registry.plugin_info("telco").status == "incompatible"


def test_tutorial_environment_variables_exist():
    source = inspect.getsource(sys.modules["verticals.plugins"])
    for var in set(re.findall(r"VERTICALS_[A-Z_]+", PLUGINS_MD.read_text() + HOOKS_MD.read_text())):
        assert var in source, f"the docs mention {var}, which verticals.plugins does not read"


def test_tutorial_model_fits_the_default_preprocessor(dists, tmp_path):
    """The factory builds a model whose forward takes the tabular preprocessor's batch (needs torch)."""
    pytest.importorskip("verticals.data.tabular", reason="TabularPreprocessor not in this checkout yet")
    torch = pytest.importorskip("torch")
    from verticals.data.validation import validate

    _install_tutorial(dists, tmp_path / "verticals-telco")
    registry = get_registry()
    pipeline = registry.pipeline("telco.churn")
    dataset = registry.dataset_of(pipeline)
    valid = validate(dataset.loader().collect().head(300), dataset.schema, stage="train").valid
    pre = pipeline.preprocessor(dataset)
    pre.fit(valid)
    batch = pre.transform(valid, with_target=True)
    info = pre.info()
    model = registry.model_of(pipeline).factory(info, **pipeline.model_options(dataset, info))
    with torch.no_grad():
        logits = model(**{name: torch.from_numpy(array) for name, array in batch.inputs.items()})
    assert tuple(logits.shape) == (len(batch),)


def test_tutorial_tests_run_before_the_plugin_is_installed(tmp_path):
    """`pytest tests/` in the tutorial's folder passes with nothing installed (its conftest.py adds src/)."""
    import os
    import subprocess

    root = tmp_path / "verticals-telco"
    for rel, text in _tutorial_files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout


def test_tutorial_python_version_is_the_projects():
    core = tomllib.loads((DOCS.parent / "core" / "pyproject.toml").read_text())["project"]["requires-python"]
    tutorial = tomllib.loads(_tutorial_files()["pyproject.toml"])["project"]["requires-python"]
    assert tutorial == core == ">=3.11"
    assert "Python 3.11" in PLUGINS_MD.read_text()


def test_tutorial_makes_a_file_the_pipeline_can_score(dists, tmp_path, monkeypatch):
    """The snippet that writes `subscribers.parquet` runs, and the file passes scoring validation."""
    import polars as pl
    from verticals.data.validation import validate

    text = PLUGINS_MD.read_text()
    (snippet,) = re.findall(r"^python - <<'PY'\n(.*?)^PY$", text, re.M | re.S)
    _install_tutorial(dists, tmp_path / "verticals-telco")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "docs/plugins.md", "exec"), {})
    frame = pl.read_parquet(tmp_path / "subscribers.parquet")
    assert frame.height == 1000 and "churned" not in frame.columns
    dataset = get_registry().dataset("telco.subscribers")
    result = validate(frame, dataset.schema, stage="score")
    assert result.rejects.height == 0 and result.valid.height == 1000
    assert "verticals score telco.churn --input subscribers.parquet" in text
